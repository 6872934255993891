"""Face detector latency over KServe v2 gRPC against REST (binary tensors), one server, one run,
printed as a gRPC/REST ratio of medians.

    .venv/bin/python benchmarks/grpc_rest.py --requests 300

REST goes through Serve's HAProxy front door straight to the model's replica; gRPC reaches the
front application's gRPC server, which calls the model's replica over a handle. One sequential
client each (tritonclient.grpc and tritonclient.http), alternating call by call so drift in the
shared machine's load falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from front_door import FACE as MODEL  # benchmarks/front_door.py, beside this script
from front_door import SIDE, image
from latency import Result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server() -> tuple[str, str]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from app.build import build_app
    from app.leftovers import stop_leftover_haproxies

    config = Path(tempfile.mkdtemp(prefix="rayvino-bench-")) / "config.json"
    config.write_text(
        json.dumps({"model_config_list": [{"config": {"name": "face-detection", "base_path": str(MODEL)}}]})
    )
    http_port, grpc_port = free_port(), free_port()
    stop_leftover_haproxies()  # one that an earlier run left would hold Serve's ports
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=512 << 20)
    serve.start(http_options={"host": "127.0.0.1", "port": http_port}, logging_config={"enable_access_log": False})
    serve.run(build_app({"config_path": str(config), "grpc_port": grpc_port}), name="bench", route_prefix="/")
    return f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="measured calls per wire")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    if not (MODEL / "1" / "model.xml").is_file():
        sys.exit("models/face-detection is missing: run `make models` first")
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http_url, grpc_url = start_server()
    data = image()
    rest = httpclient.InferenceServerClient(http_url)
    rest_input = httpclient.InferInput("data", list(data.shape), "FP32")
    rest_input.set_data_from_numpy(data, binary_data=True)
    rest_output = [httpclient.InferRequestedOutput("detection_out", binary_data=True)]
    rpc = grpcclient.InferenceServerClient(grpc_url)
    rpc_input = grpcclient.InferInput("data", list(data.shape), "FP32")
    rpc_input.set_data_from_numpy(data)

    calls = {
        "REST": lambda: rest.infer("face-detection", [rest_input], outputs=rest_output).as_numpy("detection_out"),
        "gRPC": lambda: rpc.infer("face-detection", [rpc_input]).as_numpy("detection_out"),
    }
    answers = {wire: call() for wire, call in calls.items()}
    if not np.array_equal(answers["REST"], answers["gRPC"]):
        sys.exit("REST and gRPC answers differ")
    latencies: dict[str, list[float]] = {wire: [] for wire in calls}
    start = time.perf_counter()
    for i in range(args.warmup + args.requests):
        for wire, call in calls.items():
            began = time.perf_counter()
            call()
            if i >= args.warmup:
                latencies[wire].append((time.perf_counter() - began) * 1000)
    seconds = time.perf_counter() - start
    results = {wire: Result(len(values), seconds, values) for wire, values in latencies.items()}
    rpc.close()
    rest.close()

    print(
        f"face-detection, {SIDE}x{SIDE} BGR FP32 input ({data.nbytes} bytes), {args.requests} sequential "
        f"calls per wire, alternating, {os.cpu_count()} cores"
    )
    print(f"{'wire':<5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for wire, result in results.items():
        print(f"{wire:<5} {result.percentile(50):>8.2f} {result.percentile(90):>8.2f} {result.percentile(99):>8.2f}")
    ratio = results["gRPC"].percentile(50) / results["REST"].percentile(50)
    print(f"\ngRPC / REST p50: x{ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
