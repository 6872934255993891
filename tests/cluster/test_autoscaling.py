"""Serve autoscaling through the HAProxy front door: a model, a pipeline in the shared pipeline
runner and a pipeline with a deployment of its own, each with an ``autoscaling_config``
(min 1, max 2, target 1 ongoing request), go to 2 replicas under load and back to 1 when the load
drops, with every answer checked and none failed, during the scale-down included.

A light load (one client per target that pauses between requests: under 1 replica's worth)
runs all along; an extra client per target, which does not pause, makes it 2 replicas' worth
until every target's deployment has 2 RUNNING replicas and the new ones have run inferences, then
stops. So the scale-down happens under load: the replica Serve stops may still hold requests
HAProxy gave it, and must finish them (a stopping replica drains: HAProxy takes it out of its
backend first, app/serve_flags.py's RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S, and Serve
waits for its ongoing requests). Replicas are counted from Serve's details.

The three targets scale at the same time, so the test waits for one scale-up and one scale-down.
"""

from __future__ import annotations

import time

import pytest

from tests.cluster.load import Load
from tests.cluster.scaling import (
    AUTOSCALING,
    THINK_S,
    NewReplicas,
    detect_sender,
    face_config,
    failed_attempts,
    light,
    pipeline_sender,
    replicas,
    settled_at,
    spread,
)
from tests.integration.conftest import wait_for

SHARED, OWN = "faces-shared", "faces-own"  # a pipeline in the runner, and one with a deployment of its own
DEPLOYMENTS = {"model.face-detection": "face-detection", "pipelines": SHARED, f"pipeline.{OWN}": OWN}


def options() -> dict:
    """The ray_serve block: the model, the runner (by its name, ``pipelines``) and the pipeline
    that an autoscaling_config of its own gives a deployment of its own."""
    return {name: {"autoscaling_config": AUTOSCALING} for name in DEPLOYMENTS}


def senders(url: str, clients: int) -> list:
    return [
        detect_sender(url, clients),
        pipeline_sender(url, SHARED, clients),
        pipeline_sender(url, OWN, clients),
    ]


def report(load: Load, extra: Load, seconds: dict[str, float]) -> str:
    requests = load.snapshot() + extra.snapshot()
    return (
        f"\nautoscaling: ready {seconds['ready'] - seconds['started']:.1f} s after serve.run; 2 replicas of each of "
        f"{', '.join(DEPLOYMENTS)} {seconds['up'] - seconds['load']:.1f} s after the extra load began "
        f"(the new ones had answered after "
        f"{seconds['answered'] - seconds['load']:.1f} s); back to 1 "
        f"{seconds['down'] - seconds['drop']:.1f} s after it stopped\n"
        f"{len(requests)} requests ({len(extra.snapshot())} by the extra clients), "
        f"{sum(r.succeeded for r in requests)} succeeded, failed attempts: "
        f"{dict(load.failures() + extra.failures()) or 'none'}"
    )


@pytest.mark.timeout(600)
def test_a_model_and_pipelines_scale_up_under_load_and_down_when_it_drops(cluster, tmp_path, free_port, capsys):
    import httpx
    from ray import serve

    from app.build import build_app

    seconds = {"started": time.monotonic()}
    serve.start(
        http_options={"host": "127.0.0.1", "port": free_port},
        proxy_location="HeadOnly",
        logging_config={"enable_access_log": False},
    )
    config = face_config(tmp_path, options(), pipelines=(SHARED, OWN))
    serve.run(build_app({"config_path": str(config), "grpc_port": 0}), name="rayvino", route_prefix="/")
    url = f"127.0.0.1:{free_port}"
    with httpx.Client(base_url=f"http://{url}", timeout=30) as http:
        for model in DEPLOYMENTS.values():
            wait_for(
                lambda model=model: http.get(f"/v2/models/{model}/ready").status_code == 200,
                timeout=300,
                what=f"{model} to be ready",
            )
    for deployment in DEPLOYMENTS:
        wait_for(lambda d=deployment: settled_at(d, 1), timeout=120, what=f"{deployment} at min_replicas (1)")
    seconds["ready"] = time.monotonic()
    first = {d: {r["replica_id"] for r in replicas(d)} for d in DEPLOYMENTS}

    targets = len(DEPLOYMENTS)
    light_senders = [light(send, THINK_S) for send in senders(url, 1)]
    with Load(spread(light_senders, 1), clients=targets, max_attempts=1) as load:
        wait_for(lambda: load.succeeded_since(0) >= 2 * targets, timeout=120, what="the light load to be answered")
        with Load(spread(senders(url, 1), 1), clients=targets, max_attempts=1) as extra:
            seconds["load"] = time.monotonic()
            up = {  # each deployment's replicas when it had 2 RUNNING
                deployment: wait_for(
                    lambda d=deployment: settled_at(d, 2) or load.fatal() or extra.fatal(),
                    timeout=180,
                    what=f"{deployment} to scale up to 2 replicas",
                )
                for deployment in DEPLOYMENTS
            }
            seconds["up"] = time.monotonic()
            # The new replicas answer: each spends inference CPU (an idle replica spends next to none).
            watches = {d: NewReplicas(d, first[d]) for d in DEPLOYMENTS}
            added = [
                wait_for(
                    lambda watch=watch: watch.answered() or extra.fatal(),
                    timeout=120,
                    what=f"a new replica of {deployment} to run inferences",
                )
                for deployment, watch in watches.items()
            ]
            seconds["answered"] = time.monotonic()
            mark = extra.mark()
            wait_for(lambda: extra.succeeded_since(mark) >= targets, timeout=60, what="answers at 2 replicas")
        seconds["drop"] = time.monotonic()
        for deployment in DEPLOYMENTS:
            wait_for(
                lambda d=deployment: settled_at(d, 1) or load.fatal(),
                timeout=180,
                what=f"{deployment} to scale back down to 1 replica",
            )
        seconds["down"] = time.monotonic()
        mark = load.mark()
        wait_for(lambda: load.succeeded_since(mark) >= targets, timeout=60, what="answers after the scale-down")
    with capsys.disabled():  # the figures show in `make test` too
        print(report(load, extra, seconds))
        for line in failed_attempts([load, extra], seconds):
            print(f"  {line}")

    assert all(len(ids) == 2 and isinstance(ids[0], str) for ids in up.values()), up
    assert all(isinstance(replica, dict) for replica in added), added  # a replica, not a failed request
    for deployment in DEPLOYMENTS:
        assert settled_at(deployment, 1), replicas(deployment)
    assert failed_attempts([load, extra], seconds) == []
    assert all(r.succeeded for r in load.snapshot() + extra.snapshot())
