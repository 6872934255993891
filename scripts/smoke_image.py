"""The image's smoke test, run by the Containerfile's ``smoke`` stage inside ``podman build``.

    python smoke_image.py ENTRYPOINT... CONFIG

starts the image's entry point (the command given, with free ports added), waits until it is
ready, sends tritonclient's requests for the astronaut's face to ``face-detection`` and to the
``faces`` pipeline and checks both answers, then sends SIGTERM while clients keep sending
requests: the server must exit 0 and every request it accepted must have been answered right.
Prints what it measured. Exits non-zero, failing the build, on any failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # tests/sigterm.py: beside it in the image, or the checkout's
from tests import sigterm  # noqa: E402


def check_answers(port: int) -> None:
    import skimage.data
    import tritonclient.http as http

    client = http.InferenceServerClient(f"127.0.0.1:{port}")
    image = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
    data = http.InferInput("data", list(image.shape), "FP32")
    data.set_data_from_numpy(image)
    detections = client.infer("face-detection", [data]).as_numpy("detection_out")[0, 0]
    faces = detections[: np.argmax(detections[:, 0] == -1)]
    faces = faces[faces[:, 2] > 0.5]
    assert len(faces) == 1, f"face-detection found {len(faces)} faces: {faces}"
    box = faces[0, 3:] * 512
    np.testing.assert_allclose(box, sigterm.FACE, atol=5)
    print(f"smoke: face-detection found the astronaut's face at {np.round(box).tolist()}", flush=True)

    pipeline_input = http.InferInput("image", list(image.shape), "FP32")
    pipeline_input.set_data_from_numpy(image)
    result = client.infer("faces", [pipeline_input])
    boxes, landmarks = result.as_numpy("boxes"), result.as_numpy("landmarks")
    assert boxes.shape == (1, 1, 4), boxes.shape
    assert result.as_numpy("confidences")[0, 0, 0] > 0.9
    np.testing.assert_allclose(boxes[0, 0] * 512, sigterm.FACE, atol=5)
    assert landmarks.size == 1404, landmarks.shape  # 468 points x 3
    print(f"smoke: the faces pipeline found the face and {landmarks.size // 3} landmarks", flush=True)


def main(entrypoint: list[str]) -> int:
    port, grpc_port = sigterm.free_port(), sigterm.free_port()
    # The build shares the machine's network: Serve's other fixed ports must be free ones too.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | sigterm.serve_ports_env()
    command = [*entrypoint, "--port", str(port), "--grpc-port", str(grpc_port)]
    print(f"smoke: {' '.join(command)}", flush=True)
    started = time.monotonic()
    server = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        sigterm.wait_ready(server, port)
        print(f"smoke: ready after {time.monotonic() - started:.1f} s", flush=True)
        check_answers(port)
        stopped = sigterm.sigterm_under_load(server, port)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
    print(f"smoke: SIGTERM under load: exit {stopped.returncode} after {stopped.seconds:.1f} s; {stopped.outcomes}")
    assert stopped.returncode == 0, f"the entry point exited {stopped.returncode} on SIGTERM"
    assert not stopped.outcomes.failed, f"accepted requests failed: {stopped.outcomes.failed}"
    print("smoke: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
