"""The OCR pipeline on a three-node Ray cluster keeps answering when a worker node is lost.

The text recognizer has two replicas on two worker nodes; everything else stays on the head.
Under a steady load, the node holding one recognizer replica is killed: clients count the
failed attempts, retry those a client may retry, and every request ends with the right text.
Serve then replaces the lost replica on the other worker.

Placement is made certain, not left to Ray's SPREAD: worker A has room for one replica
(resource ``worker: 1``, each replica takes 1), so the first replica lands there and the second
stays pending until worker B (``worker: 2``) joins. When A goes, B has room for the replacement.
(``max_replicas_per_node: 1`` would also split them, but then the replacement has nowhere to go.)
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import skimage.io

from tests.cluster.conftest import OBJECT_STORE_BYTES
from tests.cluster.load import Load
from tests.integration.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
RECOGNIZER = "model.text-recognition"
ON_HEAD = {"num_cpus": 0, "resources": {"head": 0.01}}
ON_WORKER = {"num_cpus": 0, "resources": {"worker": 1}}
FIRST_LINE = "Region-based segmentation"


def ocr_config(directory: Path) -> Path:
    """configs/config.json cut down to the OCR pipeline, its two models and its node libraries."""
    demo = json.loads((REPO / "configs" / "config.json").read_text())
    pipeline = next(p for p in demo["pipeline_config_list"] if p["name"] == "ocr")
    libraries = {n["library_name"] for n in pipeline["nodes"] if n["type"] == "custom"}
    config = {
        "model_config_list": [
            m for m in demo["model_config_list"] if m["config"]["name"] in ("text-detection", "text-recognition")
        ],
        "custom_node_library_config_list": [
            lib for lib in demo["custom_node_library_config_list"] if lib["name"] in libraries
        ],
        "pipeline_config_list": [pipeline],
    }
    (directory / "models").symlink_to(REPO / "models")  # the paths config.json names
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


def deployment_options(config: dict) -> dict:
    """The recognizer on the workers, two replicas; every other deployment on the head (the
    pipeline's nodes run inline in its replica)."""
    names = ["ingress", "model.text-detection", "pipeline.ocr"]
    options = {name: {"ray_actor_options": ON_HEAD} for name in names}
    options[RECOGNIZER] = {"num_replicas": 2, "ray_actor_options": ON_WORKER}
    return options


def replicas(deployment: str) -> dict[str, str]:
    """Live replica actors of a deployment -> their node ids, from the GCS actor table (no dashboard)."""
    import ray._private.state

    return {
        actor_id: info["Address"]["NodeID"]
        for actor_id, info in ray._private.state.actors(actor_state_name="ALIVE").items()
        if f"#{deployment}#" in info["Name"]
    }


def page() -> np.ndarray:
    gray = skimage.io.imread(Path(skimage.data.__file__).parent / "page.png")
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2).transpose(2, 0, 1)[None], dtype=np.float32)


def ocr_sender(url: str, clients: int):
    """One tritonclient per load thread; each call is one OCR attempt returning the texts."""
    import tritonclient.http as triton

    image = page()
    connections = [triton.InferenceServerClient(url, network_timeout=60) for _ in range(clients)]

    def send(index: int) -> list[str]:
        tensor = triton.InferInput("image", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image)
        result = connections[index].infer("ocr", [tensor])
        return [t.decode() for t in result.as_numpy("texts_string").reshape(-1)]

    return send


def ready(http) -> bool:
    try:
        return http.get("/v2/models/ocr/ready").status_code == 200
    except OSError:
        return False


def start_on_two_workers(cluster, app):
    """Worker A, serve.run in a thread (it may wait for every replica, and one waits for B), then
    worker B once A holds its replica: so the recognizer's second replica can only start on B."""
    from ray import serve

    failures: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(app, name="rayvino", route_prefix="/")
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    worker_a = cluster.add_node(num_cpus=1, resources={"worker": 1}, object_store_memory=OBJECT_STORE_BYTES)
    deploying = threading.Thread(target=run, daemon=True)
    deploying.start()
    wait_for(
        lambda: worker_a.node_id in replicas(RECOGNIZER).values() or failures,
        timeout=300,
        what="the first recognizer replica to run on worker A",
    )
    assert not failures, failures
    worker_b = cluster.add_node(num_cpus=1, resources={"worker": 2}, object_store_memory=OBJECT_STORE_BYTES)
    # serve.run may return before the models run (when a config actor deploys them): wait for both.
    wait_for(
        lambda: sorted(replicas(RECOGNIZER).values()) == sorted([worker_a.node_id, worker_b.node_id]) or failures,
        timeout=300,
        what="a recognizer replica on each worker",
    )
    deploying.join(300)
    assert not deploying.is_alive() and not failures, failures
    return worker_a, worker_b


def report(load: Load, seconds: dict[str, float]) -> None:
    requests = load.snapshot()
    after_kill, after_replacement = load.succeeded_after(seconds["lost"]), load.succeeded_after(seconds["replaced"])
    print(
        f"\ncluster up and OCR ready in {seconds['deployed'] - seconds['started']:.1f} s; "
        f"replacement replica running {seconds['replaced'] - seconds['lost']:.1f} s after the kill"
    )
    print(
        f"{len(requests)} requests, {sum(len(r.attempts) for r in requests)} attempts, "
        f"{sum(len(r.attempts) > 1 for r in requests)} requests retried; "
        f"failed attempts by kind: {dict(load.failures()) or 'none'}"
    )
    print(
        f"succeeded: {sum(r.succeeded for r in requests)}; started after the kill and succeeded: {after_kill}, "
        f"of which before the replacement ran: {after_kill - after_replacement}"
    )
    for kind, message in load.examples().items():
        print(f"  {kind}: {message}")


@pytest.mark.timeout(900)
def test_ocr_keeps_answering_when_a_worker_node_is_lost(cluster, tmp_path, free_port, capsys):
    import httpx
    from ray import serve

    from app.build import build_app

    seconds = {"started": time.monotonic()}
    serve.start(
        http_options={"host": "127.0.0.1", "port": free_port},
        proxy_location="HeadOnly",
        logging_config={"enable_access_log": False},
    )
    config_path = ocr_config(tmp_path)
    options = deployment_options(json.loads(config_path.read_text()))
    worker_a, worker_b = start_on_two_workers(
        cluster, build_app({"config_path": str(config_path), "deployments": options, "grpc_port": 0})
    )
    url = f"127.0.0.1:{free_port}"
    with httpx.Client(base_url=f"http://{url}", timeout=30) as http:
        wait_for(lambda: ready(http), timeout=120, what="GET /v2/models/ocr/ready to answer 200")
    seconds["deployed"] = time.monotonic()

    # The recognizer's replicas are on the two workers; nothing else is on a worker.
    placement = replicas(RECOGNIZER)
    assert sorted(placement.values()) == sorted([worker_a.node_id, worker_b.node_id]), placement
    for name in set(options) - {RECOGNIZER}:
        wait_for(lambda name=name: replicas(name), timeout=120, what=f"{name} to run")
        assert set(replicas(name).values()) == {cluster.head_node.node_id}, (name, replicas(name))

    clients = 3
    with Load(ocr_sender(url, clients), clients=clients) as load:
        wait_for(lambda: load.succeeded_since(0) >= 4, timeout=120, what="requests to succeed before the node is lost")
        seconds["lost"] = time.monotonic()  # for the printed figures only
        cluster.remove_node(worker_a, allow_graceful=False)  # SIGKILL: the machine is gone, not drained
        after_loss = load.mark()  # requests begun from here on were sent with the node gone
        wait_for(
            lambda: sorted(replicas(RECOGNIZER).values()) == [worker_b.node_id] * 2,
            timeout=180,
            what="Serve to replace the lost recognizer replica on worker B",
        )
        seconds["replaced"] = time.monotonic()
        after_replacement = load.mark()
        wait_for(
            lambda: load.succeeded_since(after_replacement) >= 4,
            timeout=120,
            what="requests to succeed after the replacement",
        )
    with capsys.disabled():  # the figures show in `make test` too
        report(load, seconds)

    assert not load.fatal(), [a.message for a in load.fatal()]
    requests = load.snapshot()
    assert all(r.succeeded for r in requests), [a.message for r in requests for a in r.attempts if a.error]
    for request in requests:
        assert len(request.result) == 7 and request.result[0] == FIRST_LINE, request.result
    assert load.succeeded_since(after_loss) > 0  # the pipeline kept answering once the node was gone
