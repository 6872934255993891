"""Face detector throughput and latency: through the server (KServe v2 REST, binary tensors)
against raw OpenVINO in-process and a bare uvicorn server, measured in one run, printed as ratios.

    make bench            # or: .venv/bin/python benchmarks/face_detection.py --seconds 10

The server is a real local Ray cluster serving only the face detector from the demo models; the
client is tritonclient's asyncio HTTP client with N concurrent workers. Raw OpenVINO runs the same
model with one infer request per worker thread. The bare server (benchmarks/bare_server.py) is the
same REST app and OpenVINO code in one uvicorn process without Ray. All share this machine's cores with the client,
so read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import skimage.data
from latency import Result  # benchmarks/latency.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "face-detection"
SIDE = 300  # face-detection-retail-0004's own input size; the IR resizes to 128 inside


def image() -> np.ndarray:
    bgr = cv2.resize(skimage.data.astronaut()[:, :, ::-1], (SIDE, SIDE))
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None], dtype=np.float32)


def run_raw(concurrency: int, seconds: float, warmup: float) -> Result:
    compiled = ov.Core().compile_model(str(MODEL / "1" / "model.xml"), "CPU")
    data = image()
    latencies: list[float] = []
    lock = threading.Lock()
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    def worker() -> None:
        request = compiled.create_infer_request()
        while (now := time.perf_counter()) < stop_at:
            request.infer({"data": data})
            if now >= start_at:
                with lock:
                    latencies.append((time.perf_counter() - now) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(len(latencies), seconds, latencies)


async def run_server(url: str, concurrency: int, seconds: float, warmup: float) -> Result:
    import tritonclient.http.aio as triton

    data = image()
    client = triton.InferenceServerClient(url, conn_limit=concurrency)
    latencies: list[float] = []
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    async def worker() -> None:
        tensor = triton.InferInput("data", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=True)
        output = triton.InferRequestedOutput("detection_out", binary_data=True)
        while (now := time.perf_counter()) < stop_at:
            result = await client.infer("face-detection", [tensor], outputs=[output])
            result.as_numpy("detection_out")
            if now >= start_at:
                latencies.append((time.perf_counter() - now) * 1000)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    return Result(len(latencies), seconds, latencies)


@contextlib.contextmanager
def bare_server() -> Iterator[str]:
    """benchmarks/bare_server.py under uvicorn in a process of its own, until the block ends."""
    port = "8766"
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent), "--factory"]
    server = subprocess.Popen([*command, "bare_server:app", "--port", port, "--log-level", "warning"], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"http://127.0.0.1:{port}/v2/health/live"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare uvicorn server did not start")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def _answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=1).status == 200
    except OSError:
        return False


def start_server() -> str:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from app.build import build_app

    folder = Path(tempfile.mkdtemp(prefix="rayvino-bench-"))
    config = folder / "config.json"
    config.write_text(
        json.dumps({"model_config_list": [{"config": {"name": "face-detection", "base_path": str(MODEL)}}]})
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=512 << 20)
    serve.start(http_options={"host": "127.0.0.1", "port": 8765}, logging_config={"enable_access_log": False})
    serve.run(build_app({"config_path": str(config)}), name="bench", route_prefix="/")
    return "127.0.0.1:8765"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per configuration")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    if not (MODEL / "1" / "model.xml").is_file():
        sys.exit("models/face-detection is missing: run `make models` first")

    measured: dict[int, dict[str, Result]] = {c: {} for c in args.concurrency}
    with bare_server() as bare:  # before Ray starts: each server has the cores to itself
        for concurrency in args.concurrency:
            measured[concurrency]["raw"] = run_raw(concurrency, args.seconds, args.warmup)
            measured[concurrency]["bare"] = asyncio.run(run_server(bare, concurrency, args.seconds, args.warmup))
    url = start_server()
    for concurrency in args.concurrency:
        measured[concurrency]["server"] = asyncio.run(run_server(url, concurrency, args.seconds, args.warmup))

    print(f"face-detection, {SIDE}x{SIDE} BGR FP32 input, {args.seconds:.0f} s per run, {os.cpu_count()} cores")
    print(f"{'conc':>4} {'path':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for concurrency, results in measured.items():
        for name, result in results.items():
            p50, p99 = result.percentile(50), result.percentile(99)
            print(f"{concurrency:>4} {name:<7} {result.throughput:>8.1f} {p50:>8.2f} {p99:>8.2f}")
    for baseline, title in (("raw", "raw OpenVINO"), ("bare", "bare uvicorn")):
        print(f"\nserver / {title} (throughput: higher is better; latency: lower is better)")
        for concurrency, results in measured.items():
            server, base = results["server"], results[baseline]
            print(
                f"  concurrency {concurrency}: throughput x{server.throughput / base.throughput:.2f}, "
                f"p50 x{server.percentile(50) / base.percentile(50):.1f}, "
                f"p99 x{server.percentile(99) / base.percentile(99):.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
