"""What a request costs through rayvino, against raw OpenVINO in-process and a bare uvicorn
server running the same REST app and OpenVINO code, measured in one run, printed as ratios.

    make bench            # or: .venv/bin/python benchmarks/front_door.py --rounds 3 --seconds 5

Cases: OVMS's 10-float ``dummy`` model (binary tensors), the face detector at 300x300 and
512x512 (binary), and at 512x512 as JSON; each at concurrency 1 and 8. The three paths are up
at once and measured in turn, case by case, for ``--rounds`` rounds (the two servers in the other
order every other round): each figure is the median over the rounds, so drift in the shared
machine's load falls on all of them alike.

The client is tritonclient's asyncio HTTP client with N concurrent workers; raw OpenVINO runs the
same models with one infer request per worker thread. Everything shares this machine's cores with
the client, so read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import skimage.data
from latency import Result  # benchmarks/latency.py, beside this script
from local_ray import start_local_ray  # benchmarks/local_ray.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.factory (the dummy model) is not an installed package

import app.serve_flags  # noqa: E402, F401  # the Ray Serve settings rayvino runs with, before Ray starts
from tests import factory  # noqa: E402

MODELS = ROOT / "models"
FACE = MODELS / "face-detection"
SIDE = 300  # face-detection-retail-0004's own input size; the IR resizes to 128 inside
HTTP_PORT, BARE_PORT = 8765, 8766


def image(side: int = SIDE) -> np.ndarray:
    bgr = cv2.resize(skimage.data.astronaut()[:, :, ::-1], (side, side))
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None], dtype=np.float32)


@dataclass(frozen=True)
class Case:
    title: str
    model: str
    input: str
    output: str
    data: Callable[[], np.ndarray]
    binary: bool = True


CASES = (
    Case("dummy 10 floats", "dummy", "b", "a", lambda: np.arange(10, dtype=np.float32)[None]),
    Case("face 300x300", "face-detection", "data", "detection_out", lambda: image(300)),
    Case("face 512x512", "face-detection", "data", "detection_out", lambda: image(512)),
    Case("face 512x512 JSON", "face-detection", "data", "detection_out", lambda: image(512), binary=False),
)


def model_paths(folder: Path) -> dict[str, Path]:
    return {"dummy": factory.write_dummy(folder / "dummy", [1]), "face-detection": FACE}


def run_raw(path: Path, case: Case, concurrency: int, seconds: float, warmup: float) -> Result:
    compiled = ov.Core().compile_model(str(path / "1" / "model.xml"), "CPU")
    data = case.data()
    latencies: list[float] = []
    lock = threading.Lock()
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    def worker() -> None:
        request = compiled.create_infer_request()
        while (now := time.perf_counter()) < stop_at:
            request.infer({case.input: data})
            if now >= start_at:
                with lock:
                    latencies.append((time.perf_counter() - now) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(len(latencies), seconds, latencies)


async def run_client(url: str, case: Case, concurrency: int, seconds: float, warmup: float) -> Result:
    import tritonclient.http.aio as triton

    data = case.data()
    client = triton.InferenceServerClient(url, conn_limit=concurrency)
    latencies: list[float] = []
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    async def worker() -> None:
        tensor = triton.InferInput(case.input, list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=case.binary)
        output = triton.InferRequestedOutput(case.output, binary_data=case.binary)
        while (now := time.perf_counter()) < stop_at:
            result = await client.infer(case.model, [tensor], outputs=[output])
            result.as_numpy(case.output)
            if now >= start_at:
                latencies.append((time.perf_counter() - now) * 1000)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    return Result(len(latencies), seconds, latencies)


@contextlib.contextmanager
def bare_server(config: Path, port: int = BARE_PORT) -> Iterator[str]:
    """benchmarks/bare_server.py under uvicorn in a process of its own, until the block ends."""
    url = f"127.0.0.1:{port}"
    app_dir = str(Path(__file__).parent)
    command = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "bare_server:app"]
    command += ["--port", str(port), "--log-level", "warning"]
    with server_process(command, config, lambda: _ready(url), "the bare uvicorn server"):
        yield url


@contextlib.contextmanager
def server_process(command: list[str], config: Path, ready: Callable[[], bool], what: str) -> Iterator[None]:
    """A bare server serving ``config`` (``BARE_SERVER_CONFIG``) in a process of its own, from
    when ``ready`` says so until the block ends."""
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "BARE_SERVER_CONFIG": str(config)})
    try:
        wait_until(ready, lambda: server.poll() is None, what)
        yield
    finally:
        server.terminate()
        server.wait()


def wait_until(ready: Callable[[], bool], alive: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 300
    while not ready():
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


def _ready(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=1).status == 200
    except OSError:
        return False


def start_rayvino(config: Path) -> str:
    from ray import serve

    from app.build import build_app

    start_local_ray()
    serve.start(
        http_options={"host": "127.0.0.1", "port": HTTP_PORT},
        proxy_location="HeadOnly",
        logging_config={"enable_access_log": False},
    )
    serve.run(build_app({"config_path": str(config), "grpc_port": 0}), name="bench", route_prefix="/")
    url = f"127.0.0.1:{HTTP_PORT}"
    wait_until(lambda: _ready(url), lambda: True, "rayvino")
    return url


def median_result(results: list[Result]) -> tuple[float, float]:
    """(median throughput, median p50) over the rounds."""
    return statistics.median(r.throughput for r in results), statistics.median(r.percentile(50) for r in results)


def report(measured: dict[tuple[str, int], dict[str, list[Result]]], args: argparse.Namespace) -> None:
    rounds = len(next(iter(measured.values()))["rayvino"])
    print(
        f"\nmedian of {rounds} rounds, {args.seconds:.0f} s each, {os.cpu_count()} cores; ratios are rayvino / baseline"
    )
    header = f"{'case':<20} {'conc':>4} {'path':<8} {'req/s':>9} {'p50 ms':>8}   {'thr/bare':>8} {'p50/bare':>8}"
    print(header + f" {'thr/raw':>8} {'p50/raw':>8}")
    for (title, concurrency), paths in measured.items():
        figures = {path: median_result(results) for path, results in paths.items()}
        for path, (throughput, p50) in figures.items():
            line = f"{title:<20} {concurrency:>4} {path:<8} {throughput:>9.1f} {p50:>8.2f}"
            if path == "rayvino":
                (bare_thr, bare_p50), (raw_thr, raw_p50) = figures["bare"], figures["raw"]
                line += f"   x{throughput / bare_thr:>7.2f} x{p50 / bare_p50:>7.2f}"
                line += f" x{throughput / raw_thr:>7.2f} x{p50 / raw_p50:>7.2f}"
            print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per figure and round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--cases", nargs="+", default=[c.title for c in CASES], help="titles of the cases to run")
    args = parser.parse_args()
    if not (FACE / "1" / "model.xml").is_file():
        sys.exit("models/face-detection is missing: run `make models` first")

    folder = Path(tempfile.mkdtemp(prefix="rayvino-bench-"))
    paths = model_paths(folder)
    config = folder / "config.json"
    models = [{"config": {"name": name, "base_path": str(path)}} for name, path in paths.items()]
    config.write_text(json.dumps({"model_config_list": models}))
    cases = [c for c in CASES if c.title in args.cases]
    measured: dict[tuple[str, int], dict[str, list[Result]]] = {
        (c.title, n): {"raw": [], "bare": [], "rayvino": []} for c in cases for n in args.concurrency
    }
    with bare_server(config) as bare:
        rayvino = start_rayvino(config)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for case in cases:
                for concurrency in args.concurrency:
                    figures = measured[(case.title, concurrency)]
                    timing = (concurrency, args.seconds, args.warmup)
                    figures["raw"].append(run_raw(paths[case.model], case, *timing))
                    servers = [("bare", bare), ("rayvino", rayvino)]
                    for path, url in servers[:: 1 if round_ % 2 == 0 else -1]:  # neither always goes first
                        figures[path].append(asyncio.run(run_client(url, case, *timing)))
    report(measured, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
