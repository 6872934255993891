"""Autoscaling, timed: how long from the start of a load until a second face-detection replica
answers, on the one node that has room for it and on a node Ray's autoscaler adds for it; and
face-detection's throughput at 1 and at 2 replicas.

    .venv/bin/python benchmarks/autoscale.py                  # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/autoscale.py --skip-node      # one node only (no port 6379 needed)
    .venv/bin/python benchmarks/autoscale.py --skip-s3        # no first-load figure from S3

One node: a local Ray (2 CPUs, benchmarks/local_ray.py) serves face-detection with
tests/cluster/scaling.py's autoscaling_config (min 1, max 2, target 1 ongoing request, 1 s upscale
delay); two clients send requests back to back. "Answering" is the second replica RUNNING in
Serve's details and having spent 0.3 s of CPU since it was first seen RUNNING (inference; an
idle replica spends next to none).

Added node: the same on tests/cluster/autoscaler.py's cluster, whose head (0 CPUs) has room for
one replica: the second waits for the autoscaler's worker node. It needs port 6379 free, so no
other `ray start` head may run on the machine.

Throughput: the same model at a fixed 1, then 2 replicas (a config reload in between),
``--clients`` clients for ``--seconds`` each.

First load: a reload that adds face-detection under a new name, from the local folder, then from
``s3://`` (moto's S3 server on loopback, started here; OVMS's variables S3_ENDPOINT and AWS_* set
before Ray starts), until the model answers ready.

Every answer is checked (one face, where the astronaut's is); a wrong or failed one stops the run.
Run it alone: it starts Ray clusters of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local_ray import start_local_ray  # noqa: E402  # benchmarks/local_ray.py, beside this script

from tests.cluster.load import Load  # noqa: E402
from tests.cluster.scaling import AUTOSCALING, NewReplicas, detect_sender, face_config, running, settled_at  # noqa: E402

MODEL = "model.face-detection"
SLOT = "replica_slot"
ANSWERING_CPU_S = 0.3


def wait(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_config(config: Path) -> str:
    """Serve on a free loopback port (HAProxy's front door, app/serve_flags.py); the URL for clients."""
    import httpx
    from ray import serve

    from app.build import build_app

    port = free_port()
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        proxy_location="HeadOnly",
        logging_config={"enable_access_log": False},
    )
    serve.run(build_app({"config_path": str(config), "grpc_port": 0}), name="rayvino", route_prefix="/")
    url = f"127.0.0.1:{port}"
    with httpx.Client(base_url=f"http://{url}", timeout=30) as http:
        wait(lambda: http.get("/v2/models/face-detection/ready").status_code == 200, 300, "face-detection ready")
    wait(lambda: settled_at(MODEL, 1), 120, "one replica")
    return url


def check(load: Load) -> None:
    failed = [a.message for r in load.snapshot() for a in r.attempts if a.error]
    if failed:
        raise RuntimeError(f"{len(failed)} failed requests, the first: {failed[0]}")


def time_to_second_replica(url: str, head_node: str | None = None) -> dict[str, float]:
    """Two clients back to back until a second replica answers; seconds from the load's start to
    each step (the node joining, when ``head_node`` is given: any other alive node)."""
    from tests.cluster.autoscaler import worker_nodes

    first = {r["replica_id"] for r in running(MODEL)}
    steps: dict[str, float] = {}
    with Load(detect_sender(url, 2), clients=2, max_attempts=1) as load:
        started = time.monotonic()
        if head_node is not None:
            wait(lambda: worker_nodes(head_node) or load.fatal(), 300, "a worker node")
            steps["node joined"] = time.monotonic() - started
        wait(lambda: settled_at(MODEL, 2) or load.fatal(), 300, "2 replicas")
        steps["second replica RUNNING"] = time.monotonic() - started
        watch = NewReplicas(MODEL, first, cpu=ANSWERING_CPU_S)
        new = wait(lambda: watch.answered() or load.fatal(), 120, "the replica to answer")
        steps["second replica answering"] = time.monotonic() - started
        if not isinstance(new, dict) or (head_node is not None and new["node_id"] == head_node):
            raise RuntimeError(f"no second replica answered on an added node: {new}")
    check(load)
    steps["requests"] = len(load.snapshot())
    stopped = time.monotonic()
    wait(lambda: settled_at(MODEL, 1), 300, "the scale-down to 1 replica")
    steps["back to 1 replica after the load stopped"] = time.monotonic() - stopped
    if head_node is not None:
        wait(lambda: not worker_nodes(head_node), 300, "the node to go")
        steps["node gone after the load stopped"] = time.monotonic() - stopped
    return steps


def throughput(url: str, clients: int, seconds: float) -> float:
    with Load(detect_sender(url, clients), clients=clients, max_attempts=1) as load:
        time.sleep(1.0)  # warm-up: requests begun in the first second are not counted
        mark, started = load.mark(), time.monotonic()
        time.sleep(seconds)
        done = sum(1 for r in load.snapshot()[mark:] if r.succeeded)
        elapsed = time.monotonic() - started
    check(load)
    return done / elapsed


def one_node(folder: Path, args: argparse.Namespace, s3_url: str | None) -> tuple[dict, dict, dict | str]:
    import httpx
    import ray

    start_local_ray()  # the S3 server's variables, when set, are in its environment: every replica reads them
    try:
        url = serve_config(face_config(folder, {MODEL: {"autoscaling_config": AUTOSCALING}}))
        steps = time_to_second_replica(url)
        rates = {}
        for replicas in (1, 2):
            face_config(folder, {MODEL: {"num_replicas": replicas}})
            answer = httpx.post(f"http://{url}/v1/config/reload", timeout=300)
            if answer.status_code not in (200, 201):
                raise RuntimeError(f"reload: {answer.status_code} {answer.text}")
            wait(lambda replicas=replicas: settled_at(MODEL, replicas), 300, f"{replicas} replicas")
            rates[replicas] = throughput(url, args.clients, args.seconds)
        loads: dict | str = "not measured (--skip-s3)"
        if s3_url is not None:
            try:
                loads = first_loads(url, folder, s3_url)
            except Exception as exc:  # the other figures stand; say why this one is missing
                loads = f"not measured: {type(exc).__name__}: {exc}"
        return steps, rates, loads
    finally:
        ray.shutdown()


def added_node(folder: Path) -> dict[str, float]:
    import ray

    from tests.cluster.autoscaler import AutoscalingHead, WorkerType

    head = AutoscalingHead(
        {"replica-node": WorkerType({"CPU": 1, SLOT: 1}, max_workers=1)}, head_cpus=0, head_resources={SLOT: 1}
    )
    with head:
        ray.init(address=head.address, log_to_driver=False)
        try:
            options = {
                MODEL: {"autoscaling_config": AUTOSCALING, "ray_actor_options": {"num_cpus": 0, "resources": {SLOT: 1}}}
            }
            url = serve_config(face_config(folder, options))
            return time_to_second_replica(url, ray.get_runtime_context().get_node_id())
        finally:
            ray.shutdown()


def start_s3() -> tuple[object, dict[str, str], str]:
    """moto's S3 server on loopback with models/face-detection uploaded; its environment (OVMS's
    variables) for the Ray about to start, and the model's s3:// URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
        "S3_ENDPOINT": f"http://{host}:{port}",
    }
    client = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket="models")
    local = ROOT / "models" / "face-detection"
    for path in sorted(local.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), "models", f"face-detection/{path.relative_to(local)}")
    return server, env, "s3://models/face-detection"


def first_loads(url: str, folder: Path, s3_url: str) -> dict[str, float]:
    """Seconds from a reload that adds face-detection under a new name until it answers ready:
    from the local folder, then from S3 (downloaded into this node's cache first)."""
    import httpx

    config = json.loads((folder / "config.json").read_text())
    seconds = {}
    for name, base_path in (("face-local", str(ROOT / "models" / "face-detection")), ("face-s3", s3_url)):
        config["model_config_list"].append({"config": {"name": name, "base_path": base_path}})
        (folder / "config.json").write_text(json.dumps(config))
        started = time.monotonic()
        with httpx.Client(base_url=f"http://{url}", timeout=300) as http:
            http.post("/v1/config/reload")
            wait(lambda name=name: http.get(f"/v2/models/{name}/ready").status_code == 200, 300, f"{name} ready")
        seconds[name] = time.monotonic() - started
        detect_sender(url, 1, name)(0)  # the answer is checked
    return seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for the throughput figures")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load per throughput figure")
    parser.add_argument("--skip-node", action="store_true", help="skip the added-node scenario")
    parser.add_argument("--skip-s3", action="store_true", help="skip the first load from S3 (moto's server)")
    return parser.parse_args()


def show(title: str, steps: dict[str, float]) -> None:
    print(title)
    for step, value in steps.items():
        print(f"  {step}: {value:.0f}" if step == "requests" else f"  {step}: {value:.1f} s")


def main() -> int:
    args = parse_args()
    server, s3_url = None, None
    if not args.skip_s3:
        server, env, s3_url = start_s3()
        os.environ.update(env)  # before Ray starts: its processes inherit them
    try:
        with tempfile.TemporaryDirectory(prefix="rayvino-bench-autoscale-") as folder:
            steps, rates, loads = one_node(Path(folder), args, s3_url)
            node = None if args.skip_node else added_node(Path(folder))
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    print(f"\nface-detection, autoscaling_config {json.dumps(AUTOSCALING)}; 2 clients back to back")
    show("one node (room for both replicas): from the start of the load", steps)
    if node is not None:
        show("added node (the autoscaler starts a worker for the second replica): from the start of the load", node)
    print(f"throughput, {args.clients} clients, {args.seconds:g} s each, every answer checked:")
    print(f"  1 replica: {rates[1]:.1f} requests/s; 2 replicas: {rates[2]:.1f} requests/s (x{rates[2] / rates[1]:.2f})")
    print(
        "  on 2 cores expect little from a second replica: OpenVINO already uses both cores for one "
        "inference, and the clients and HAProxy share them"
    )
    if isinstance(loads, str):
        print(f"first load of face-detection from S3 against a local folder: {loads}")
    else:
        print(
            "first load of face-detection (a reload adding it, until it answers ready): "
            f"local folder {loads['face-local']:.1f} s, S3 (moto on loopback, into the node's cache) "
            f"{loads['face-s3']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
