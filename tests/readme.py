"""The README's fenced examples, found by language and a line they hold, so that tests run them.

Every Python, JSON, YAML, C, C++, Mermaid and shell example must be claimed by a marker below: a new
example that no test runs fails ``tests/unit/test_readme.py::test_every_example_is_run``.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

# What each example holds, and so how a test finds it.
REST_CLIENT = ("python", 'result.as_numpy("detection_out")')
GRPC_CLIENT = ("python", "grpc.InferenceServerClient(")
PIPELINE_CLIENT = ("python", "def ask(pipeline, image):")
PYTHON_NODE = ("python", "class Threshold(Node):")
PYTHON_LOADER = ("python", "class MyLoader(Loader):")
CONFIG_EXCERPT = ("json", '"model_version_policy": {"latest": {"num_versions": 2}}, "nireq": 4')
C_NODE_CONFIG = ("json", '"library_name": "scale"')
LOADER_CONFIG = ("json", '"loader_name": "mine"')
RAY_SERVE_BLOCK = ("json", '"model.text-recognition": {"autoscaling_config"')
INLINE_BLOCK = ("json", '"pipeline.ocr": {"inline": true}')
SERVE_CONFIG_ARGS = ("yaml", "import_path: app.build:build_app")
C_NODE_FUNCTIONS = ("c", '#include "custom_node_interface.h"')
C_NODE_BUILD = ("sh", "gcc -shared -fPIC")
OCR_GRAPH = ("mermaid", "custom: ocr_preprocess")
FACES_GRAPH = ("mermaid", "model: face-detection")
CURL = ("sh", "curl -s localhost:8000/v2/models/face-detection")
VALIDATE = ("sh", "$ python -m app validate configs/config.json")
CPP_LOADER = ("cpp", "class MyLoader : public ovms::CustomLoaderInterface")
CPP_LOADER_BUILD = ("sh", "g++ -std=c++17")
CPP_LOADER_CONFIG = ("json", '"loader_name": "cpp"')
STORED_MODEL_CONFIG = ("json", '"base_path": "s3://models/face-detection"')
AUTOSCALING_BLOCK = ("json", '"upscale_delay_s": 5, "downscale_delay_s": 60')
SERVE_CONFIG_COMMAND = ("sh", "python -m app serve-config /etc/rayvino/config.json")

RUN_BY_TESTS = [
    REST_CLIENT,
    GRPC_CLIENT,
    PIPELINE_CLIENT,
    PYTHON_NODE,
    PYTHON_LOADER,
    CONFIG_EXCERPT,
    C_NODE_CONFIG,
    LOADER_CONFIG,
    RAY_SERVE_BLOCK,
    INLINE_BLOCK,
    SERVE_CONFIG_ARGS,
    C_NODE_FUNCTIONS,
    C_NODE_BUILD,
    OCR_GRAPH,
    FACES_GRAPH,
    CURL,
    VALIDATE,
    CPP_LOADER,
    CPP_LOADER_BUILD,
    CPP_LOADER_CONFIG,
    STORED_MODEL_CONFIG,
    AUTOSCALING_BLOCK,
    SERVE_CONFIG_COMMAND,
]
# Examples no test runs, and why: each is the whole suite's own setup, or needs machines it lacks.
NOT_RUN = {
    ("sh", "make run     #"): "make test itself runs this setup",
    ("sh", "ray start --head"): "a multi-machine cluster; tests/cluster covers one on this machine",
    ("sh", "make bench"): "benchmarks run on demand, never in the suite",
    ("sh", "make check     #"): "CI runs it before the suite, as .ci/run does",
    ("sh", "make image     #"): "CI runs it after the suite, as .ci/run does; its last stage is the smoke test",
    ("sh", "podman run -p 8000:8000"): "podman run fails in this sandbox; the image's smoke stage runs its entry point",
    ("sh", "kubectl get rayservice"): "needs a Kubernetes cluster; tests/cluster/test_kuberay.py emulates it",
}
# Languages whose examples must be claimed; the log excerpt (no language) is output, not code.
CHECKED_LANGUAGES = {"python", "json", "yaml", "c", "cpp", "mermaid", "sh"}


@dataclass(frozen=True)
class Example:
    language: str
    line: int  # where the fence opens, for failure messages
    text: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def examples() -> list[Example]:
    """Every fenced block, dedented when it sits in a list item."""
    found = []
    fence = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
    text = README.read_text()
    for match in fence.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append(Example(match.group(2), line, textwrap.dedent(match.group(3))))
    return found


def example(marker: tuple[str, str]) -> Example:
    """The one example of ``marker``'s language that holds its text."""
    language, holds = marker
    matches = [e for e in examples() if e.language == language and holds in e.text]
    if len(matches) != 1:
        raise AssertionError(f"expected one {language} example in README.md holding {holds!r}, found {len(matches)}")
    return matches[0]


def config_fragment(marker: tuple[str, str]) -> dict:
    """A JSON example as an object: fragments of ``"key": value`` pairs get their braces, and an
    elided list (``[...]``) is empty."""
    text = example(marker).text.strip().replace("[...]", "[]")
    return json.loads(text if text.startswith("{") else "{" + text + "}")


def for_server(code: str, rest_url: str, grpc_url: str) -> str:
    """An example aimed at ``make run``'s ports (in code or in a curl line), aimed at the test server instead."""
    return code.replace("localhost:8000", rest_url).replace("localhost:9000", grpc_url)
