"""Ray's autoscaler adds a node for a replica that fits nowhere, the replica there serves, and
both go away once the load drops.

The cluster is tests/cluster/autoscaler.py's: a head (0 CPUs) whose autoscaler starts worker
nodes as local processes (Ray's fake multi-node provider). face-detection autoscales between 1
and 2 replicas, and each replica takes one ``replica_slot``, a custom resource: the head offers
one, so the first replica runs there, and only a worker node offers another. Everything else
rayvino runs (the front, the config and loader actors, Serve's controller and HAProxy) takes no
resources and stays on the head. Under load Serve wants a second replica, which stays pending
until the autoscaler has added a worker node; it must run there and answer. When the load drops,
Serve stops that replica (it stops replicas off the head first), the node idles and the
autoscaler removes it. A light load runs all along and two extra clients run until the second
replica has answered: every answer is checked and none may fail.

Object storage: the model comes from a moto S3 server on loopback (``s3://models/face-detection``),
with the store's variables in every node's environment and ``RAYVINO_MODEL_CACHE`` set to a folder
of the test's own, under which each node caches in a folder named by its node id (app/storage.py).
Every node of this cluster shares the machine's file system, so the test looks at the new node's
own cache: empty when the node joined, holding the model once its replica answered.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cluster.autoscaler import AutoscalingHead, WorkerType, worker_nodes
from tests.cluster.load import Load
from tests.cluster.scaling import (
    AUTOSCALING,
    THINK_S,
    NewReplicas,
    detect_sender,
    face_config,
    failed_attempts,
    light,
    replicas,
    running,
    settled_at,
)
from tests.integration.conftest import wait_for
from tests.storage_servers import NO_METADATA_ENV

MODEL = "model.face-detection"
CACHE_VARIABLE = "RAYVINO_MODEL_CACHE"  # app/storage.py's: the folder under which each node caches
SLOT = "replica_slot"  # one per face-detection replica: one on the head, one per worker node
BUCKET = "models"


def model_cache(cache: Path, node_id: str) -> set[str]:
    """The files the node ``node_id`` holds in its own model cache (``$RAYVINO_MODEL_CACHE/<node
    id>``, lock and marker files aside)."""
    folder = cache / node_id
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def s3_models(demo_models):
    """moto's S3 server holding face-detection, started before the cluster so every node can reach it."""
    from tests.storage_servers import S3Server

    with S3Server() as store:
        store.create_bucket(BUCKET)
        store.upload(demo_models / "face-detection", BUCKET, "face-detection")
        yield store


@pytest.fixture(scope="module")
def autoscaling_cluster(tmp_path_factory, s3_models):
    """A head with one replica slot and no CPUs; the autoscaler may add one worker node (1 CPU, one
    replica slot), removed after 6 s idle."""
    import ray

    if ray.is_initialized():  # a Ray session in this process already: not ours to replace
        pytest.skip("needs a Ray cluster of its own: run `pytest tests/cluster` alone (make cluster)")
    head = AutoscalingHead(
        {"replica-node": WorkerType({"CPU": 1, SLOT: 1}, max_workers=1)},
        head_cpus=0,
        head_resources={SLOT: 1},
        idle_timeout_minutes=0.1,
        env={CACHE_VARIABLE: str(tmp_path_factory.mktemp("model-cache")), **NO_METADATA_ENV, **s3_models.env},
    )
    head.start()
    try:
        ray.init(address=head.address, namespace="rayvino-autoscaler-test", log_to_driver=False)
        yield head
    finally:
        ray.shutdown()
        head.stop()


def autoscaler_wait(head: AutoscalingHead, condition, what: str, timeout: float = 240):
    """wait_for, failing with the end of the autoscaler's log (its launches and terminations)."""
    try:
        return wait_for(condition, timeout=timeout, what=f"the autoscaler {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the autoscaler's log ends:\n{head.monitor_log()}") from None


def report(head_node: str, load: Load, extra: Load, seconds: dict[str, float]) -> str:
    requests = load.snapshot() + extra.snapshot()
    return (
        f"\nautoscaler: serving {seconds['ready'] - seconds['started']:.1f} s after the head started; "
        f"under load a worker node joined after {seconds['node'] - seconds['load']:.1f} s, its replica ran after "
        f"{seconds['replica'] - seconds['load']:.1f} s and had answered after "
        f"{seconds['answered'] - seconds['load']:.1f} s; "
        f"load dropped: replica gone after {seconds['down'] - seconds['drop']:.1f} s, "
        f"node gone after {seconds['node_gone'] - seconds['drop']:.1f} s\n"
        f"{len(requests)} requests ({len(extra.snapshot())} by the extra clients), "
        f"{sum(r.succeeded for r in requests)} succeeded, failed attempts: "
        f"{dict(load.failures() + extra.failures()) or 'none'}"
    )


@pytest.mark.timeout(600)
def test_the_autoscaler_adds_a_node_for_a_replica_and_removes_it_when_idle(
    autoscaling_cluster, s3_models, tmp_path: Path, free_port, capsys
):
    import httpx
    import ray
    from ray import serve

    from app.build import build_app

    head_node = ray.get_runtime_context().get_node_id()
    seconds = {"started": time.monotonic()}
    serve.start(
        http_options={"host": "127.0.0.1", "port": free_port},
        proxy_location="HeadOnly",
        logging_config={"enable_access_log": False},
    )
    options = {MODEL: {"autoscaling_config": AUTOSCALING, "ray_actor_options": {"num_cpus": 0, "resources": {SLOT: 1}}}}
    config = face_config(tmp_path, options, base_path=s3_models.url(BUCKET, "face-detection"))
    serve.run(build_app({"config_path": str(config), "grpc_port": 0}), name="rayvino", route_prefix="/")
    url = f"127.0.0.1:{free_port}"
    with httpx.Client(base_url=f"http://{url}", timeout=30) as http:
        wait_for(
            lambda: http.get("/v2/models/face-detection/ready").status_code == 200,
            timeout=300,
            what="face-detection to be ready",
        )
    wait_for(lambda: settled_at(MODEL, 1), timeout=120, what=f"{MODEL} at min_replicas (1)")
    seconds["ready"] = time.monotonic()
    assert [r["node_id"] for r in running(MODEL)] == [head_node]
    assert worker_nodes(head_node) == {}, "a worker node before any load: something asked for resources"

    watch = NewReplicas(MODEL, {r["replica_id"] for r in replicas(MODEL)}, cpu=1.0)
    with Load(light(detect_sender(url, 1), THINK_S), clients=1, max_attempts=1) as load:
        wait_for(lambda: load.succeeded_since(0) >= 3, timeout=120, what="the light load to be answered")
        # Two extra clients: a client has a request in the server only while the server holds it, not
        # while it encodes the next 3 MB image; with one extra client Serve once took 67 s (on a
        # quiet machine) to see more than 1 request in flight on average and want a second replica.
        with Load(detect_sender(url, 2), clients=2, max_attempts=1) as extra:
            seconds["load"] = time.monotonic()
            added = autoscaler_wait(
                autoscaling_cluster, lambda: worker_nodes(head_node) or extra.fatal(), "to add a worker node"
            )
            seconds["node"] = time.monotonic()
            assert not extra.fatal(), [a.message for a in extra.fatal()]
            (node,) = added
            cache = Path(autoscaling_cluster.env[CACHE_VARIABLE])
            cached_before = model_cache(cache, node)
            wait_for(
                lambda: settled_at(MODEL, 2) or extra.fatal(), timeout=240, what=f"{MODEL}'s second replica to run"
            )
            seconds["replica"] = time.monotonic()
            assert {r["node_id"] for r in running(MODEL)} == {head_node, node}  # the second one on the new node
            # It answers: the replica on the added node spends inference CPU (an idle one spends ~none).
            # (Should Serve take it away in a dip of the load and start another, that one is watched.)
            new = wait_for(
                lambda: watch.answered(lambda r: r["node_id"] != head_node) or extra.fatal(),
                timeout=120,
                what="the added node's replica to run inferences",
            )
            assert isinstance(new, dict), new  # a replica, not failed requests
            node = new["node_id"]  # the node it answered on: one the autoscaler added (none ran before the load)
            seconds["answered"] = time.monotonic()
            mark = extra.mark()
            wait_for(lambda: extra.succeeded_since(mark) >= 3, timeout=60, what="answers at 2 replicas")
            cached_after = model_cache(cache, node)
        seconds["drop"] = time.monotonic()
        wait_for(
            lambda: settled_at(MODEL, 1) or load.fatal(), timeout=180, what=f"{MODEL} to scale back down to 1 replica"
        )
        seconds["down"] = time.monotonic()
        remaining = [r["node_id"] for r in running(MODEL)]
        autoscaler_wait(autoscaling_cluster, lambda: not worker_nodes(head_node), "to remove the idle node")
        seconds["node_gone"] = time.monotonic()
        mark = load.mark()
        wait_for(lambda: load.succeeded_since(mark) >= 3, timeout=60, what="answers after the node went")
    with capsys.disabled():  # the figures show in `make test` too
        print(report(head_node, load, extra, seconds))
        for line in failed_attempts([load, extra], seconds):
            print(f"  {line}")

    assert remaining == [head_node]  # Serve stopped the replica off the head, so the node could go
    # The model came from object storage into the new node's own cache.
    assert not cached_before, f"the new node held {cached_before} before its replica started"
    assert any(name.endswith("/1/model.xml") for name in cached_after), f"the new node's cache: {cached_after}"
    assert failed_attempts([load, extra], seconds) == []
    assert all(r.succeeded for r in load.snapshot() + extra.snapshot())
    assert replicas(MODEL) and settled_at(MODEL, 1)
