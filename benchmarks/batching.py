"""Dynamic batching: the text recognizer batched and unbatched through the server at concurrency
16, against raw OpenVINO in-process, measured in one run and printed as ratios.

    make bench            # or: .venv/bin/python benchmarks/batching.py --rounds 3 --seconds 5 --batch-wait 0.01

The server is a real local Ray cluster serving PP-OCRv4's recognizer twice from the same files,
with a fixed line width (shape (1,3,48,320)): `recognizer` unbatched and `recognizer-batched` with
dynamic_batching. The client is tritonclient's asyncio HTTP client, one worker per concurrent
request, each sending its own text line. Raw OpenVINO runs the same model in this process with
one infer request per worker thread (unbatched), and one thread running whole batches (the
ceiling batching can reach). Everything shares this machine's cores, so read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import openvino as ov
from latency import Result  # benchmarks/latency.py, beside this script
from local_ray import start_local_ray  # benchmarks/local_ray.py

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "text-recognition"
SHAPE = (1, 3, 48, 320)
INPUT, OUTPUT = "x", "softmax_11.tmp_0"
PORT = 8767


def lines(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, SHAPE).astype(np.float32) for _ in range(count)]


def compiled(batch: int) -> ov.CompiledModel:
    core = ov.Core()
    model = core.read_model(str(MODEL / "1" / "model.onnx"))
    model.reshape([batch, *SHAPE[1:]])
    return core.compile_model(model, "CPU")


def run_raw(concurrency: int, seconds: float, warmup: float) -> Result:
    """One thread and one infer request per concurrent client, one line per inference."""
    model, data = compiled(1), lines(concurrency)
    latencies: list[float] = []
    lock = threading.Lock()
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    def worker(line: np.ndarray) -> None:
        request = model.create_infer_request()
        while (now := time.perf_counter()) < stop_at:
            request.infer({INPUT: line})
            if now >= start_at:
                with lock:
                    latencies.append((time.perf_counter() - now) * 1000)

    threads = [threading.Thread(target=worker, args=(line,)) for line in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(len(latencies), seconds, latencies)


def run_raw_batches(batch: int, seconds: float, warmup: float) -> Result:
    """Whole batches back to back: lines per second at best, the latency of one batch."""
    request = compiled(batch).create_infer_request()
    data = np.concatenate(lines(batch))
    latencies: list[float] = []
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds
    while (now := time.perf_counter()) < stop_at:
        request.infer({INPUT: data})
        if now >= start_at:
            latencies.extend([(time.perf_counter() - now) * 1000] * batch)
    return Result(len(latencies), seconds, latencies)


async def run_server(url: str, model: str, concurrency: int, seconds: float, warmup: float) -> Result:
    import tritonclient.http.aio as triton

    client = triton.InferenceServerClient(url, conn_limit=concurrency)
    latencies: list[float] = []
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    async def worker(line: np.ndarray) -> None:
        tensor = triton.InferInput(INPUT, list(line.shape), "FP32")
        tensor.set_data_from_numpy(line, binary_data=True)
        output = triton.InferRequestedOutput(OUTPUT, binary_data=True)
        while (now := time.perf_counter()) < stop_at:
            result = await client.infer(model, [tensor], outputs=[output])
            result.as_numpy(OUTPUT)
            if now >= start_at:
                latencies.append((time.perf_counter() - now) * 1000)

    try:
        await asyncio.gather(*(worker(line) for line in lines(concurrency)))
    finally:
        await client.close()
    return Result(len(latencies), seconds, latencies)


def start_server(max_batch_size: int, wait_s: float) -> str:
    from ray import serve

    from app.build import build_app

    shape = "(" + ",".join(map(str, SHAPE)) + ")"
    folder = Path(tempfile.mkdtemp(prefix="rayvino-bench-batching-"))
    config = folder / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_config_list": [
                    {"config": {"name": name, "base_path": str(MODEL), "shape": shape}}
                    for name in ("recognizer", "recognizer-batched")
                ],
                "ray_serve": {
                    "deployments": {
                        "model.recognizer-batched": {
                            "dynamic_batching": {"max_batch_size": max_batch_size, "batch_wait_timeout_s": wait_s}
                        }
                    }
                },
            }
        )
    )
    start_local_ray()
    serve.start(http_options={"host": "127.0.0.1", "port": PORT}, logging_config={"enable_access_log": False})
    serve.run(build_app({"config_path": str(config)}), name="bench-batching", route_prefix="/")
    return f"127.0.0.1:{PORT}"


def batch_sizes() -> Counter:
    from ray import serve

    handle = serve.get_deployment_handle("model.recognizer-batched", app_name="bench-batching")
    return Counter(handle.batch_sizes.remote().result(timeout_s=60))


def pooled(results: list[Result]) -> Result:
    return Result(
        sum(r.requests for r in results),
        sum(r.seconds for r in results),
        [ms for r in results for ms in r.latencies_ms],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per configuration and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every configuration, interleaved")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-wait", type=float, default=0.01, help="batch_wait_timeout_s")
    args = parser.parse_args()
    if not (MODEL / "1" / "model.onnx").is_file():
        sys.exit("models/text-recognition is missing: run `make models` first")

    url = start_server(args.max_batch_size, args.batch_wait)
    runs: dict[str, list[Result]] = {"raw": [], "raw batches": [], "unbatched": [], "batched": []}
    sizes: Counter = Counter()
    for _ in range(args.rounds):  # interleaved, so that load from outside this run hits every path alike
        runs["raw"].append(run_raw(args.concurrency, args.seconds, args.warmup))
        runs["raw batches"].append(run_raw_batches(args.max_batch_size, args.seconds, args.warmup))
        runs["unbatched"].append(
            asyncio.run(run_server(url, "recognizer", args.concurrency, args.seconds, args.warmup))
        )
        before = batch_sizes()
        runs["batched"].append(
            asyncio.run(run_server(url, "recognizer-batched", args.concurrency, args.seconds, args.warmup))
        )
        sizes += batch_sizes() - before
    raw, raw_batches, unbatched, batched = (pooled(results) for results in runs.values())

    print(
        f"text-recognition {list(SHAPE)} FP32, concurrency {args.concurrency}, max_batch_size "
        f"{args.max_batch_size}, batch_wait_timeout_s {args.batch_wait}, {args.rounds} rounds of "
        f"{args.seconds:.0f} s per path, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'path':<26} {'lines/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    rows = (
        ("raw OpenVINO, batch 1", raw),
        (f"raw OpenVINO, batch {args.max_batch_size}", raw_batches),
        ("server, unbatched", unbatched),
        ("server, dynamic batching", batched),
    )
    for name, result in rows:
        print(f"{name:<26} {result.throughput:>8.1f} {result.percentile(50):>8.1f} {result.percentile(99):>8.1f}")
    merged = sum(size * count for size, count in sizes.items())
    print(
        f"\nbatches the server ran (requests merged: inferences): {dict(sorted(sizes.items()))}, "
        f"mean {merged / max(1, sum(sizes.values())):.1f} requests per inference"
    )
    print("ratios (throughput: higher is better; p50: lower is better)")
    for name, result, base, base_name in (
        ("server batched", batched, unbatched, "server unbatched"),
        ("server unbatched", unbatched, raw, "raw batch 1"),
        ("server batched", batched, raw, "raw batch 1"),
        ("server batched", batched, raw_batches, f"raw batch {args.max_batch_size}"),
    ):
        print(
            f"  {name} / {base_name}: throughput x{result.throughput / base.throughput:.2f}, "
            f"p50 x{result.percentile(50) / base.percentile(50):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
