"""The README's client examples, run as written against the session's server (its ports swapped in
for ``make run``'s), with the answers their comments promise."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import numpy as np

from tests import readme


def run(marker: tuple[str, str], model_server: str, grpc_url: str, namespace: dict) -> list[str]:
    """Execute one example in ``namespace``; returns what it printed, line by line."""
    printed: list[str] = []
    namespace["print"] = lambda *values: printed.append(" ".join(map(str, values)))
    code = readme.for_server(readme.example(marker).text, model_server, grpc_url)
    exec(compile(code, str(readme.example(marker)), "exec"), namespace)
    return printed


def promised_numbers(marker: tuple[str, str], call: str) -> list[float]:
    """The numbers in the comment after the README line that holds ``call``."""
    [line] = [line for line in readme.example(marker).text.splitlines() if call in line]
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", line.split("#", 1)[1])]


def test_the_rest_and_grpc_client_examples(model_server, grpc_url):
    namespace: dict = {}
    printed = run(readme.REST_CLIENT, model_server, grpc_url, namespace)
    confidence, *box = promised_numbers(readme.REST_CLIENT, "print(confidence")
    first = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", printed[0])]
    assert abs(first[0] - confidence) < 0.01 and np.allclose(first[1:], box, atol=2), printed
    over_rest = namespace["result"].as_numpy("detection_out")
    run(readme.GRPC_CLIENT, model_server, grpc_url, namespace)  # uses the REST example's image
    np.testing.assert_array_equal(namespace["result"].as_numpy("detection_out"), over_rest)  # "bit for bit"


def test_the_pipeline_client_example(model_server, grpc_url):
    namespace: dict = {}
    printed = run(readme.PIPELINE_CLIENT, model_server, grpc_url, namespace)
    boxes_and_shape = promised_numbers(readme.PIPELINE_CLIENT, 'print(faces.as_numpy("boxes")')
    faces = namespace["faces"]
    np.testing.assert_allclose(faces.as_numpy("boxes").reshape(-1) * 512, boxes_and_shape[:4], atol=2)
    assert list(faces.as_numpy("landmarks").shape) == boxes_and_shape[4:], printed
    texts = [t.decode() for t in namespace["ocr"].as_numpy("texts_string")]
    [line] = [line for line in readme.example(readme.PIPELINE_CLIENT).text.splitlines() if "print([t.decode()" in line]
    first_text, count = re.search(r"\['([^']+)', \.\.\.\] (\d+) lines", line).groups()
    assert texts[0] == first_text and len(texts) == int(count), texts


def test_the_curl_examples(model_server, grpc_url):
    lines = readme.example(readme.CURL).text.splitlines()
    checked = 0
    for index, line in enumerate(lines):
        if not line.startswith("curl "):
            continue
        command, _, remark = line.partition("#")  # a comment on the line itself describes, not shows
        command = shlex.split(readme.for_server(command, model_server, grpc_url))
        answer = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout.strip()
        shown = "".join(c.removeprefix("#").strip() for c in _comments_after(lines, index))
        if remark:
            assert answer and not shown, line
        elif shown.startswith("{") and shown.endswith("}"):
            assert json.loads(answer) == json.loads(shown), (line, answer)
            checked += 1
        else:
            assert answer == shown, (line, answer)
            checked += 1
    assert checked == 2


def _comments_after(lines: list[str], index: int) -> list[str]:
    comments = []
    for line in lines[index + 1 :]:
        if not line.startswith("#"):
            break
        comments.append(line)
    return comments
