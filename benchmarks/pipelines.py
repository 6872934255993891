"""DAG pipelines on Ray Serve: the OCR pipeline against the same pipeline in-process, its nodes
inline against a deployment each, the cost per pipeline hop against a direct model call, and the
demultiplexed recognizer at 1 and 2 replicas, measured in one run and printed as ratios against
baselines from the same run.

    .venv/bin/python benchmarks/pipelines.py                 # about 3-4 minutes on 2 cores
    .venv/bin/python benchmarks/pipelines.py --seconds 5 --concurrency 1 4 --hops 1 2 4 8

The config (written to a temporary folder) serves the demo OCR pipeline (prepare -> text-detection
-> crop, a dynamic demultiplexer -> text-recognition per line -> decode, gathering), the demo faces
pipeline (face-detection -> crop, a demultiplexer -> to_rgb -> face-landmarks per face), pipelines of K
pass-through add_one nodes (add_number "0") and the tiny `dummy` model. Each pipeline is served
twice: with a deployment per node, calling its models' deployments (``ocr``, ``hops-K``:
``"inline": false``), and with its nodes and models run in the pipeline runner's replica (``ocr-inline``,
``hops-K-inline``, the default). The client is tritonclient's
asyncio HTTP client with binary tensors; the in-process baseline runs the same pipeline through
LocalCatalog + PipelineServable, without Ray, before the cluster starts, and the bare baseline
runs it the same way behind rayvino's REST app in one uvicorn process (benchmarks/bare_server.py).
Server, nodes, models and client all share this machine's cores, so read the ratios, not the
absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
import skimage.io
from front_door import bare_server  # benchmarks/front_door.py: the bare uvicorn baseline
from latency import Result  # benchmarks/latency.py, beside this script
from local_ray import start_local_ray  # benchmarks/local_ray.py
from procfs import cpu_seconds  # benchmarks/procfs.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.factory (the dummy model) is not an installed package

from app.config import load_config  # noqa: E402
from app.inference import InferRequest  # noqa: E402
from app.pipeline.local import LocalCatalog  # noqa: E402
from app.pipeline.servable import PipelineServable  # noqa: E402
from tests import factory  # noqa: E402

APP = "bench-pipelines"
PORT = 8766
BARE_PORT = 8769
RECOGNIZER = "model.text-recognition"
NUMBERS = np.arange(10, dtype=np.float32).reshape(1, 10)

WorkerCall = Callable[[], Awaitable[None]]


def page() -> np.ndarray:
    """scikit-image's page.png (grey) as FP32 [1,3,H,W] BGR, as the OCR pipeline takes it."""
    grey = skimage.io.imread(Path(skimage.data.__file__).parent / "page.png")
    return np.ascontiguousarray(np.repeat(grey[None, None], 3, axis=1), dtype=np.float32)


def astronaut() -> np.ndarray:
    """scikit-image's astronaut (one face) as FP32 [1,3,512,512] BGR, as the faces pipeline takes it."""
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


def hop_pipeline(k: int) -> dict:
    """``hops-K``: request -> K add_one nodes adding 0 in a chain -> response."""
    nodes, source = [], {"node_name": "request", "data_item": "numbers"}
    for i in range(1, k + 1):
        nodes.append(
            {
                "name": f"pass{i}",
                "type": "custom",
                "library_name": "add_one",
                "params": {"add_number": "0"},
                "inputs": [{"input_numbers": source}],
                "outputs": [{"data_item": "output_numbers", "alias": "numbers"}],
            }
        )
        source = {"node_name": f"pass{i}", "data_item": "numbers"}
    return {"name": f"hops-{k}", "inputs": ["numbers"], "nodes": nodes, "outputs": [{"numbers": source}]}


def write_config(folder: Path, hops: list[int]) -> Path:
    """The demo OCR and faces pipelines with only the models and libraries they use, the hop
    pipelines and dummy."""
    demo = json.loads((ROOT / "configs" / "config.json").read_text())
    (folder / "models").symlink_to(ROOT / "models")  # the demo's relative paths, ctc_decode's model_path too
    factory.write_dummy(folder / "dummy", [1])
    used = ("text-detection", "text-recognition", "face-detection", "face-landmarks")
    models = [m for m in demo["model_config_list"] if m["config"]["name"] in used]
    libraries = [
        lib
        for lib in demo["custom_node_library_config_list"]
        if lib["name"] in ("ocr_preprocess", "text_crops", "ctc_decode", "detection_crops", "image_transformation")
    ]
    isolated = [p for p in demo["pipeline_config_list"] if p["name"] == "ocr"] + [hop_pipeline(k) for k in hops]
    inline = [{**p, "name": f"{p['name']}-inline"} for p in isolated]
    faces = [p for p in demo["pipeline_config_list"] if p["name"] == "faces"]  # the default: all inline
    config = {
        "model_config_list": models + [{"config": {"name": "dummy", "base_path": "dummy"}}],
        "custom_node_library_config_list": libraries + [{"name": "add_one", "base_path": "builtin:add_one"}],
        "pipeline_config_list": isolated + inline + faces,
        "ray_serve": {
            "deployments": {
                **{f"pipeline.{p['name']}": {"inline": False} for p in isolated},
                **{f"pipeline.{p['name']}": {"inline": True} for p in inline},
            }
        },
    }
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


# --- load generation -----------------------------------------------------------------------------


async def load(make_call: Callable[[], WorkerCall], concurrency: int, seconds: float, warmup: float) -> Result:
    """``concurrency`` workers calling back to back; latencies count only after ``warmup``."""
    latencies: list[float] = []
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    async def worker() -> None:
        call = make_call()
        while (now := time.perf_counter()) < stop_at:
            await call()
            if now >= start_at:
                latencies.append((time.perf_counter() - now) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(len(latencies), seconds, latencies)


async def in_process(
    config_path: Path, pipeline_name: str, data: np.ndarray, concurrencies: list[int], seconds: float, warmup: float
) -> tuple[dict[int, Result], dict[str, np.ndarray]]:
    """A pipeline in this process: models in OpenVINO, nodes in threads, no Ray, no HTTP. Returns
    the measurements and the outputs of a first request (what the server must answer too)."""
    config = load_config(str(config_path))
    catalog = LocalCatalog.from_config(config, config_path.parent)

    async def source() -> LocalCatalog:
        return catalog

    pipeline = next(
        PipelineServable(p, source, catalog.call) for p in config.pipeline_config_list if p.name == pipeline_name
    )
    try:
        first = await pipeline.infer(InferRequest(pipeline_name, None, {"image": data}))

        def make_call() -> WorkerCall:
            async def call() -> None:
                await pipeline.infer(InferRequest(pipeline_name, None, {"image": data}))

            return call

        return {c: await load(make_call, c, seconds, warmup) for c in concurrencies}, dict(first.outputs)
    finally:
        catalog.close()  # frees the driver's nodes before Ray takes the cores


async def server_load(
    url: str, model: str, input_name: str, data: np.ndarray, concurrency: int, seconds: float, warmup: float
) -> Result:
    """One model or pipeline through the server's KServe v2 REST, binary tensors both ways."""
    import tritonclient.http.aio as triton

    client = triton.InferenceServerClient(url, conn_limit=concurrency, conn_timeout=120)

    def make_call() -> WorkerCall:
        tensor = triton.InferInput(input_name, list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=True)

        async def call() -> None:
            await client.infer(model, [tensor])

        return call

    try:
        return await load(make_call, concurrency, seconds, warmup)
    finally:
        await client.close()


async def server_outputs(url: str, model: str, input_name: str, data: np.ndarray) -> dict[str, np.ndarray]:
    """One request's outputs, to check the server computes what the baseline does (not a timing)."""
    import tritonclient.http.aio as triton

    client = triton.InferenceServerClient(url)
    try:
        tensor = triton.InferInput(input_name, list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=True)
        result = await client.infer(model, [tensor])
        return {out["name"]: result.as_numpy(out["name"]) for out in result.get_response()["outputs"]}
    finally:
        await client.close()


def measured_ocr(
    url: str, image: np.ndarray, concurrency: int, measure: dict, pipeline: str = "ocr"
) -> tuple[Result, Usage]:
    """The server's OCR under load, with the CPU it took (warm-up included)."""
    before = snapshot()
    result = asyncio.run(server_load(url, pipeline, "image", image, concurrency, **measure))
    return result, usage_since(before)


def check_numbers(url: str, hops: list[int]) -> None:
    """dummy adds 1 and every hop pipeline adds 0: the calls being timed do the work they claim."""
    if not np.array_equal(asyncio.run(server_outputs(url, "dummy", "b", NUMBERS))["a"], NUMBERS + 1):
        raise RuntimeError("dummy did not answer b + 1")
    for name in [f"hops-{k}{inline}" for k in hops for inline in ("", "-inline")]:
        if not np.array_equal(asyncio.run(server_outputs(url, name, "numbers", NUMBERS))["numbers"], NUMBERS):
            raise RuntimeError(f"{name} did not pass its input through")


# --- Ray -----------------------------------------------------------------------------------------


def start_ray() -> str:
    from ray import serve

    start_local_ray()
    serve.start(http_options={"host": "127.0.0.1", "port": PORT}, logging_config={"enable_access_log": False})
    return f"127.0.0.1:{PORT}"


def deploy(config_path: Path, recognizer_replicas: int | None, timeout: float = 300.0) -> float:
    """Deploy (or redeploy) the app as serve_config.yaml would, with the recognizer's replica count
    set if given; return the seconds until every replica of it is RUNNING. A replica count is a
    Serve option of the recognizer's own, so the pipelines then call its deployment instead of
    running it themselves."""
    options = {RECOGNIZER: {"num_replicas": recognizer_replicas}} if recognizer_replicas is not None else {}
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    start = time.perf_counter()
    _get_global_client().deploy_apps(
        ServeDeploySchema.model_validate(
            {
                "applications": [
                    {
                        "name": APP,
                        "route_prefix": "/",
                        "import_path": "app.build:build_app",
                        "args": {
                            "config_path": str(config_path),
                            "deployments": options,
                        },
                    }
                ]
            }
        )
    )
    while not _running(recognizer_replicas or 1):
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"{APP} not RUNNING with {recognizer_replicas} recognizer replicas after {timeout} s")
        time.sleep(0.5)
    return time.perf_counter() - start


def _running(recognizer_replicas: int) -> bool:
    """Every application RUNNING (each model and pipeline is one) and the recognizer at exactly the
    wanted count (an application can report RUNNING before a redeploy has been picked up, so the
    replica count is what tells)."""
    from ray import serve

    applications = serve.status().applications
    for name, app in applications.items():
        if app.status == "DEPLOY_FAILED":
            raise RuntimeError(f"{name} failed to deploy: {app.message}")
    recognizer = applications.get(RECOGNIZER)
    if APP not in applications or recognizer is None or any(a.status != "RUNNING" for a in applications.values()):
        return False
    states = recognizer.deployments[RECOGNIZER].replica_states
    return states.get("RUNNING", 0) == recognizer_replicas and sum(states.values()) == recognizer_replicas


# --- CPU accounting: evidence for the replica result, read from /proc (no dashboard, no state API) ---


@dataclass
class Usage:
    busy: float  # share of all cores busy, anything on the machine
    recognizer_cpu_s: list[float]  # CPU seconds of each recognizer replica


Snapshot = tuple[tuple[int, int], dict[int, float]]


def snapshot() -> Snapshot:
    return _machine_ticks(), {pid: cpu_seconds(pid) for pid in _replica_pids(RECOGNIZER)}


def usage_since(before: Snapshot) -> Usage:
    (busy0, total0), cpu0 = before
    busy1, total1 = _machine_ticks()
    cpu = [cpu_seconds(pid) - cpu0.get(pid, 0.0) for pid in _replica_pids(RECOGNIZER)]
    return Usage((busy1 - busy0) / max(1, total1 - total0), sorted(cpu, reverse=True))


def _machine_ticks() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)  # busy = all but idle and iowait


def _replica_pids(deployment: str) -> list[int]:
    """Ray titles a replica's process ``ray::ServeReplica:<app>:<deployment>``; a model's
    application is named like its deployment."""
    title = f"ray::ServeReplica:{deployment}:{deployment}".encode()
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().split(b"\0")[0].strip() == title:
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue  # a process that just ended
    return pids


def stop_ray() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


# --- report --------------------------------------------------------------------------------------


def row(label: str, result: Result) -> str:
    return (
        f"  {label:<22} {result.requests:>6} {result.throughput:>8.1f} "
        f"{result.percentile(50):>8.2f} {result.percentile(99):>8.2f}"
    )


HEADER = f"  {'':<22} {'reqs':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"


def report_ocr(
    local: dict[int, Result], bare: dict[int, Result], server: dict[int, Result], inline: dict[int, Result], lines: int
) -> None:
    shape = page().shape
    print(f"\n1. OCR pipeline, page.png FP32 {list(shape)} ({lines} text lines, so {lines} recognizer shards)")
    print(HEADER)
    for c in local:
        print(row(f"conc {c} in-process", local[c]))
        print(row(f"conc {c} bare uvicorn", bare[c]))
        print(row(f"conc {c} server, nodes apart", server[c]))
        print(row(f"conc {c} server, inline", inline[c]))
    print("  server / baseline (throughput: higher is better; latency: lower is better)")
    for c in local:
        for label, s in (("nodes apart", server[c]), ("inline", inline[c])):
            for baseline, b in (("in-process", local[c]), ("bare uvicorn", bare[c])):
                print(
                    f"    concurrency {c}, {label} / {baseline}: throughput x{s.throughput / b.throughput:.2f}, "
                    f"p50 x{s.percentile(50) / b.percentile(50):.2f}, p99 x{s.percentile(99) / b.percentile(99):.2f}"
                )


def report_faces(local: dict[int, Result], server: dict[int, Result], faces: int) -> None:
    print(f"\n1b. Faces pipeline, astronaut FP32 [1, 3, 512, 512] ({faces} face, so {faces} landmarks shard)")
    print(HEADER)
    for c in local:
        print(row(f"conc {c} in-process", local[c]))
        print(row(f"conc {c} server, inline", server[c]))
    for c in local:
        s, b = server[c], local[c]
        print(
            f"    concurrency {c}, server / in-process: throughput x{s.throughput / b.throughput:.2f}, "
            f"p50 x{s.percentile(50) / b.percentile(50):.2f}, p99 x{s.percentile(99) / b.percentile(99):.2f}"
        )


def report_hops(direct: Result, hops: dict[int, Result], inline: dict[int, Result]) -> None:
    print("\n2. Cost per node: FP32 [1,10], concurrency 1, through the server")
    print(HEADER + f" {'x direct':>9}")
    base = direct.percentile(50)
    print(row("direct model dummy", direct) + f" {1.0:>9.2f}")
    for label, results in (("apart", hops), ("inline", inline)):
        for k, result in results.items():
            name = f"{k} node{'s' if k > 1 else ''} {label}"
            print(row(name, result) + f" {result.percentile(50) / base:>9.2f}")
    for label, results in (("a deployment each", hops), ("inline", inline)):
        ks = np.array(list(results), dtype=float)
        p50 = np.array([r.percentile(50) for r in results.values()])
        slope, intercept = np.polyfit(ks, p50, 1) if len(ks) > 1 else (float("nan"), float("nan"))
        print(
            f"  nodes {label}, least-squares fit of p50 over K: {slope:.2f} ms per node "
            f"(x{slope / base:.2f} of a direct call); K=0 intercept {intercept:.2f} ms = x{intercept / base:.2f} "
            "direct (the pipeline's own work)"
        )


def report_replicas(concurrency: int, one: tuple[Result, Usage], two: tuple[Result, Usage], redeploy_s: float) -> None:
    (one_result, one_usage), (two_result, two_usage) = one, two
    print(
        f"\n3. Demultiplexed stage: OCR at concurrency {concurrency}, {RECOGNIZER} replicas "
        f"(redeploy 1 -> 2 took {redeploy_s:.1f} s)"
    )
    print(HEADER + f" {'cores busy':>10}  recognizer CPU s per replica (warm-up included)")
    for label, result, usage in (("1 replica", one_result, one_usage), ("2 replicas", two_result, two_usage)):
        cpu = ", ".join(f"{seconds:.1f}" for seconds in usage.recognizer_cpu_s)
        print(row(label, result) + f" {usage.busy:>10.0%}  {cpu}")
    print(
        f"  2 / 1 replicas: throughput x{two_result.throughput / one_result.throughput:.2f}, "
        f"p50 x{two_result.percentile(50) / one_result.percentile(50):.2f}, "
        f"p99 x{two_result.percentile(99) / one_result.percentile(99):.2f}"
    )
    for line in why_replicas(one_usage, two_usage):
        print(f"  # {line}")


def why_replicas(one: Usage, two: Usage) -> list[str]:
    """The reading of the 2/1 ratio, from what was measured rather than from what was hoped."""
    cores = os.cpu_count() or 1
    lines = [
        f"{cores} cores serve both recognizer replicas, the detector, the nodes, the pipeline, the proxy and "
        "this client, and each OpenVINO replica already runs its infer on every core (LATENCY hint)."
    ]
    if one.busy >= 0.85:
        lines.append(
            f"With 1 replica the machine was already {one.busy:.0%} busy: a second replica adds a process, "
            "not compute, so a ratio near 1 is the honest result here; it pays off with cores of its own."
        )
    cpu = two.recognizer_cpu_s
    if len(cpu) == 2 and cpu[0] > 0:
        spread = "spread over both" if cpu[1] / cpu[0] > 0.3 else "mostly went to one of the"
        lines.append(f"The shards {spread} replicas ({cpu[0]:.1f} and {cpu[1]:.1f} CPU s).")
    return lines


# --- main ----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per configuration")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured time before each measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="OCR client concurrencies")
    parser.add_argument("--hops", type=int, nargs="+", default=[1, 2, 4], help="pipeline lengths K")
    parser.add_argument("--replica-concurrency", type=int, default=4, help="OCR concurrency for 1 vs 2 replicas")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    for model in ("text-detection", "text-recognition"):
        if not (ROOT / "models" / model / "1").is_dir():
            sys.exit(f"models/{model} is missing: run `make models` first")
    with tempfile.TemporaryDirectory(prefix="rayvino-bench-pipelines-") as folder:
        return run(args, Path(folder))


def run(args: argparse.Namespace, folder: Path) -> int:
    hops = sorted(set(args.hops))
    config_path = write_config(folder, hops)
    measure = {"seconds": args.seconds, "warmup": args.warmup}
    image = page()

    # The baselines first, alone on the machine: Ray's idle processes would otherwise tax them.
    local, first = asyncio.run(in_process(config_path, "ocr", image, args.concurrency, **measure))
    texts = list(first["texts_string"].reshape(-1))
    faces_local, faces_first = asyncio.run(in_process(config_path, "faces", astronaut(), args.concurrency, **measure))
    # The same pipeline, in-process, behind the same REST app in one uvicorn process: what HTTP costs.
    with bare_server(config_path, BARE_PORT) as bare:
        bare_ocr = {c: asyncio.run(server_load(bare, "ocr", "image", image, c, **measure)) for c in args.concurrency}
    url = start_ray()
    try:
        deploy_s = deploy(config_path, None)
        for pipeline in ("ocr", "ocr-inline"):
            served = asyncio.run(server_outputs(url, pipeline, "image", image))["texts_string"].reshape(-1)
            if list(served) != texts:
                raise RuntimeError(f"server {pipeline} differs from in-process: {list(served)} != {texts}")
        landmarks = asyncio.run(server_outputs(url, "faces", "image", astronaut()))["landmarks"]
        if not np.allclose(landmarks, faces_first["landmarks"], atol=1e-3):
            raise RuntimeError("server faces differs from in-process")
        check_numbers(url, hops)
        faces = {
            c: asyncio.run(server_load(url, "faces", "image", astronaut(), c, **measure)) for c in args.concurrency
        }

        # Hops first so that the 1- and 2-replica OCR runs below are measured back to back.
        direct = asyncio.run(server_load(url, "dummy", "b", NUMBERS, 1, **measure))
        by_k = {k: asyncio.run(server_load(url, f"hops-{k}", "numbers", NUMBERS, 1, **measure)) for k in hops}
        by_k_inline = {
            k: asyncio.run(server_load(url, f"hops-{k}-inline", "numbers", NUMBERS, 1, **measure)) for k in hops
        }
        inline = {c: measured_ocr(url, image, c, measure, "ocr-inline")[0] for c in args.concurrency}

        concurrencies = list(
            dict.fromkeys([c for c in args.concurrency if c != args.replica_concurrency] + [args.replica_concurrency])
        )  # the replica case last
        server = {c: measured_ocr(url, image, c, measure) for c in concurrencies}
        deploy(config_path, 1)  # the recognizer's deployment, for both pipelines now
        one = measured_ocr(url, image, args.replica_concurrency, measure)
        redeploy_s = deploy(config_path, 2)
        two = measured_ocr(url, image, args.replica_concurrency, measure)
    finally:
        stop_ray()

    print(
        f"\nrayvino pipelines benchmark: {args.seconds:g} s per run after {args.warmup:g} s warm-up, "
        f"{os.cpu_count()} cores; app deployed in {deploy_s:.1f} s"
    )
    report_ocr(local, bare_ocr, {c: result for c, (result, _) in server.items()}, inline, len(texts))
    report_faces(faces_local, faces, len(faces_first["boxes"].reshape(-1, 4)))
    report_hops(direct, by_k, by_k_inline)
    report_replicas(args.replica_concurrency, one, two, redeploy_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
