"""Face detector latency over KServe v2 gRPC and REST (binary tensors) through rayvino, against
the same wires on bare servers without Ray and raw OpenVINO in-process, measured in one run and
printed as ratios of medians.

    .venv/bin/python benchmarks/grpc_rest.py --requests 300

REST goes through Serve's HAProxy front door straight to the model's replica; gRPC reaches the
front application's gRPC server, which calls the model's replica over a handle. The bare servers
run rayvino's own REST app (benchmarks/bare_server.py, under uvicorn) and gRPC service
(benchmarks/bare_grpc_server.py) over the same OpenVINO code, each in one process. One sequential
client per path (tritonclient.grpc and tritonclient.http), every path called in turn, call by
call, so drift in the shared machine's load falls on all alike.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from front_door import FACE as MODEL  # benchmarks/front_door.py, beside this script
from front_door import SIDE, bare_server, image, server_process
from latency import Result
from local_ray import start_local_ray


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(config: Path) -> tuple[str, str]:
    from ray import serve

    from app.build import build_app

    http_port, grpc_port = free_port(), free_port()
    start_local_ray()
    serve.start(http_options={"host": "127.0.0.1", "port": http_port}, logging_config={"enable_access_log": False})
    serve.run(build_app({"config_path": str(config), "grpc_port": grpc_port}), name="bench", route_prefix="/")
    return f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"


@contextlib.contextmanager
def bare_grpc_server(config: Path) -> Iterator[str]:
    """benchmarks/bare_grpc_server.py in a process of its own, until the block ends."""
    import tritonclient.grpc as grpcclient

    url = f"127.0.0.1:{free_port()}"
    command = [sys.executable, str(Path(__file__).with_name("bare_grpc_server.py")), url.rsplit(":", 1)[1]]
    client = grpcclient.InferenceServerClient(url)
    try:
        with server_process(command, config, lambda: _ready(client), "the bare gRPC server"):
            yield url
    finally:
        client.close()


def _ready(client: Any) -> bool:
    from tritonclient.utils import InferenceServerException

    try:
        return client.is_server_ready()
    except InferenceServerException:
        return False


def raw_call(data: np.ndarray) -> Callable[[], np.ndarray]:
    """The same model in this process: OpenVINO's own latency, the floor of every wire."""
    import openvino as ov

    request = ov.Core().compile_model(str(MODEL / "1" / "model.xml"), "CPU").create_infer_request()
    return lambda: request.infer({"data": data})["detection_out"].copy()


def wire_calls(data: np.ndarray, urls: dict[str, str]) -> dict[str, Callable[[], np.ndarray]]:
    """One tritonclient per wire and server, each returning the detections."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    calls: dict[str, Callable[[], np.ndarray]] = {}
    for path, url in urls.items():
        if path.endswith("REST"):
            rest = httpclient.InferenceServerClient(url)
            rest_input = httpclient.InferInput("data", list(data.shape), "FP32")
            rest_input.set_data_from_numpy(data, binary_data=True)
            rest_output = [httpclient.InferRequestedOutput("detection_out", binary_data=True)]
            calls[path] = functools.partial(_rest_infer, rest, rest_input, rest_output)
        else:
            rpc = grpcclient.InferenceServerClient(url)
            rpc_input = grpcclient.InferInput("data", list(data.shape), "FP32")
            rpc_input.set_data_from_numpy(data)
            calls[path] = functools.partial(_grpc_infer, rpc, rpc_input)
    return calls


def _rest_infer(client: Any, tensor: Any, outputs: list[Any]) -> np.ndarray:
    return client.infer("face-detection", [tensor], outputs=outputs).as_numpy("detection_out")


def _grpc_infer(client: Any, tensor: Any) -> np.ndarray:
    return client.infer("face-detection", [tensor]).as_numpy("detection_out")


def measure(calls: dict[str, Callable[[], np.ndarray]], requests: int, warmup: int) -> dict[str, Result]:
    """Every path called in turn, call by call, so drift in the machine's load falls on all alike."""
    latencies: dict[str, list[float]] = {path: [] for path in calls}
    start = time.perf_counter()
    for i in range(warmup + requests):
        for path, call in calls.items():
            began = time.perf_counter()
            call()
            if i >= warmup:
                latencies[path].append((time.perf_counter() - began) * 1000)
    seconds = time.perf_counter() - start
    return {path: Result(len(values), seconds, values) for path, values in latencies.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="measured calls per path")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    if not (MODEL / "1" / "model.xml").is_file():
        sys.exit("models/face-detection is missing: run `make models` first")

    config = Path(tempfile.mkdtemp(prefix="rayvino-bench-")) / "config.json"
    config.write_text(
        json.dumps({"model_config_list": [{"config": {"name": "face-detection", "base_path": str(MODEL)}}]})
    )
    data = image()
    with bare_server(config, free_port()) as bare_rest, bare_grpc_server(config) as bare_grpc:
        rest, rpc = start_server(config)
        urls = {"bare REST": bare_rest, "bare gRPC": bare_grpc, "REST": rest, "gRPC": rpc}
        calls = {"raw": raw_call(data), **wire_calls(data, urls)}
        answers = {path: call() for path, call in calls.items()}
        if not all(np.array_equal(answers["REST"], answer) for answer in answers.values()):
            sys.exit("the paths' answers differ")
        results = measure(calls, args.requests, args.warmup)
    report(results, data, args.requests)
    return 0


def report(results: dict[str, Result], data: np.ndarray, requests: int) -> None:
    print(
        f"face-detection, {SIDE}x{SIDE} BGR FP32 input ({data.nbytes} bytes), {requests} sequential "
        f"calls per path, alternating, {os.cpu_count()} cores; bare = one process without Ray"
    )
    print(f"{'path':<10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for path, result in results.items():
        print(f"{path:<10} {result.percentile(50):>8.2f} {result.percentile(90):>8.2f} {result.percentile(99):>8.2f}")
    p50 = {path: result.percentile(50) for path, result in results.items()}
    print()
    for wire in ("REST", "gRPC"):
        print(
            f"rayvino {wire} p50: x{p50[wire] / p50['bare ' + wire]:.2f} bare {wire}, x{p50[wire] / p50['raw']:.2f} raw"
        )
    print(f"gRPC / REST p50: x{p50['gRPC'] / p50['REST']:.2f} (bare: x{p50['bare gRPC'] / p50['bare REST']:.2f})")


if __name__ == "__main__":
    sys.exit(main())
