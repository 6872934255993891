"""Stop a serving command with SIGTERM while clients send requests, as Kubernetes stops a pod, and
tell what every request got. Used by tests/cluster/test_sigterm.py (``python -m app run`` and
``python -m app serve``) and by the image's smoke stage (the image's entry point).

Each client sends KServe v2 REST requests for the astronaut's face, one new connection each, as
fast as answers come. A request either got an HTTP answer (200 is right; anything else failed),
found no server to take it (connection refused: the server had stopped listening, so it never
accepted it), or was cut after it reached the server (reset, closed or timed out without an
answer): a failure of an accepted request.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

FACE = [179, 82, 271, 175]  # the astronaut's face in skimage's 512x512 picture, in pixels


def astronaut_request() -> tuple[bytes, dict[str, str]]:
    """A binary KServe v2 request (tritonclient's wire form) for face-detection."""
    import skimage.data

    image = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "data",
                    "datatype": "FP32",
                    "shape": list(image.shape),
                    "parameters": {"binary_data_size": image.nbytes},
                }
            ],
            "outputs": [{"name": "detection_out", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + image.tobytes(), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def face_box(body: bytes, header_length: int) -> list[float] | None:
    """The one confident face of a binary face-detection answer, in pixels (None if not exactly one)."""
    return face_box_of(np.frombuffer(body[header_length:], dtype=np.float32))


def face_box_of(detection_out: np.ndarray) -> list[float] | None:
    """The one confident face in face-detection's ``detection_out`` [1,1,200,7], in pixels."""
    detections = detection_out.reshape(200, 7)
    found = detections[: np.argmax(detections[:, 0] == -1)]
    found = found[found[:, 2] > 0.5]
    return None if len(found) != 1 else [float(v) * 512 for v in found[0, 3:]]


def is_the_face(box: list[float] | None) -> bool:
    return box is not None and all(abs(a - b) <= 5 for a, b in zip(box, FACE, strict=True))


@dataclass
class Outcomes:
    answered: Counter = field(default_factory=Counter)  # "200", "503", "wrong answer"...
    refused: int = 0  # never accepted: nothing listened any more
    cut: list[str] = field(default_factory=list)  # accepted, then no answer
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def failed(self) -> list[str]:
        wrong = [f"{n} x HTTP {status}" for status, n in self.answered.items() if status != "200"]
        return wrong + self.cut

    def __str__(self) -> str:
        return f"answered {dict(self.answered)}, refused {self.refused}, cut {len(self.cut)}: {self.cut[:3]}"


class Load:
    """``clients`` threads sending the face request to ``port`` until ``stop()`` or refused."""

    def __init__(self, port: int, clients: int = 3, timeout_s: float = 120.0) -> None:
        self.port, self.timeout_s = port, timeout_s
        self.body, self.headers = astronaut_request()
        self.outcomes = Outcomes()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Outcomes:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.outcomes

    def _client(self) -> None:
        while not self._stop.is_set():
            if not self._one():
                return  # refused: the server no longer listens

    def _one(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
        try:
            connection.connect()
        except ConnectionRefusedError:
            with self.outcomes.lock:
                self.outcomes.refused += 1
            return False
        try:
            connection.request("POST", "/v2/models/face-detection/infer", self.body, self.headers)
            response = connection.getresponse()
            body = response.read()
            status = str(response.status)
            if status == "200":
                length = int(response.getheader("Inference-Header-Content-Length", "0"))
                status = "200" if is_the_face(face_box(body, length)) else "wrong answer"
            with self.outcomes.lock:
                self.outcomes.answered[status] += 1
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
                with self.outcomes.lock:
                    self.outcomes.refused += 1
                return False
            with self.outcomes.lock:
                self.outcomes.cut.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_ports_env() -> dict[str, str]:
    """Free ports for what Serve otherwise binds at fixed ports on this machine (HAProxy's stats and
    metrics, the fallback proxy's HTTP and gRPC): a server beside other Serve instances needs them."""
    names = (
        "RAY_SERVE_HAPROXY_STATS_PORT",
        "RAY_SERVE_HAPROXY_METRICS_PORT",
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
    )
    return {name: str(free_port()) for name in names}


def wait_ready(process: subprocess.Popen, port: int, deadline_s: float = 600.0) -> None:
    """Until ``/v2/health/ready`` answers 200 (every deployment of the config is up)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before it was ready")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the server was not ready on port {port} within {deadline_s:.0f} s")


def wait_answered(load: Load, count: int, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while sum(load.outcomes.answered.values()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} answers within {deadline_s:.0f} s: {load.outcomes}")
        time.sleep(0.05)


@dataclass
class Stopped:
    returncode: int
    seconds: float  # from SIGTERM to exit
    outcomes: Outcomes


def sigterm_under_load(process: subprocess.Popen, port: int, clients: int = 3, exit_limit_s: float = 120.0) -> Stopped:
    """Start the clients, SIGTERM ``process`` once they get answers, wait for it to exit (killing
    its process group if it has not after ``exit_limit_s``), and stop the clients."""
    load = Load(port, clients).start()
    try:
        wait_answered(load, 3 * clients)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(exit_limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
        seconds = time.monotonic() - sent
    finally:
        outcomes = load.stop()
    return Stopped(returncode, seconds, outcomes)
