"""Thirty OCR pipelines over two models (tests/scale_config.py), served as a user brings them from
OVMS, without a ray_serve block: every pipeline runs in the shared pipeline runner with its nodes
inline, so the whole config is four applications (the front, two models, the runner), whatever
the number of pipelines. Every pipeline reads the rendered text; then a reload changes one of them
while clients keep calling two others, and no replica of anything restarts.

It needs a Serve of its own: deployments are named after the config's models and pipelines
(``model.text-detection``, ``pipelines``), and the integration tier's session app has the same.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.integration.conftest import wait_for
from tests.scale_config import LINES, PIPELINES, name, rendered_text, write_scale_config

CHANGED = name(7)
CALLED_DURING_THE_RELOAD = (name(0), name(PIPELINES - 1))


def texts(client, pipeline: str) -> list[str]:
    import tritonclient.http as triton

    image = rendered_text()
    given = triton.InferInput("image", list(image.shape), "FP32")
    given.set_data_from_numpy(image, binary_data=True)
    result = client.infer(pipeline, [given])
    return [t.decode() for t in result.as_numpy("texts_string").reshape(-1)]


def replica_ids() -> dict[str, set[str]]:
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    return {
        app: {r["replica_id"] for d in info["deployments"].values() for r in d["replicas"]}
        for app, info in details["applications"].items()
    }


class Callers:
    """Clients calling pipelines back to back in threads, each answer checked."""

    def __init__(self, url: str, pipelines: tuple[str, ...]) -> None:
        self.url, self.pipelines = url, pipelines
        self.sent, self.failures = 0, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call, args=(p,), daemon=True) for p in pipelines]

    def _call(self, pipeline: str) -> None:
        import tritonclient.http as triton

        client = triton.InferenceServerClient(self.url, network_timeout=120)
        while not self._stop.is_set():
            try:
                answer = texts(client, pipeline)
                if answer != LINES:
                    self.failures.append((pipeline, f"read {answer}"))
            except Exception as exc:  # counted, and the test fails naming it
                self.failures.append((pipeline, f"{type(exc).__name__}: {exc}"))
            self.sent += 1

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(180)


@pytest.mark.timeout(900)
def test_thirty_pipelines_serve_from_one_runner_and_a_reload_changes_one_alone(cluster, tmp_path, free_port):
    import httpx
    import tritonclient.http as triton
    from ray import serve

    from app.build import build_app

    serve.start(
        http_options={"host": "127.0.0.1", "port": free_port},
        proxy_location="HeadOnly",
        logging_config={"enable_access_log": False},
    )
    url = f"127.0.0.1:{free_port}"
    path = write_scale_config(tmp_path / "served")
    started = time.monotonic()
    serve.run(build_app({"config_path": str(path), "grpc_port": 0}), name="rayvino", route_prefix="/")
    http = httpx.Client(base_url=f"http://{url}", timeout=120)
    wait_for(lambda: http.get("/v2/health/ready").status_code == 200, timeout=600, what="the config to be ready")
    print(f"\n{PIPELINES} pipelines ready {time.monotonic() - started:.1f} s after serve.run")

    assert sorted(serve.status().applications) == [
        "model.text-detection",
        "model.text-recognition",
        "pipelines",
        "rayvino",
    ]
    client = triton.InferenceServerClient(url, network_timeout=120)
    for index in range(PIPELINES):
        assert texts(client, name(index)) == LINES, name(index)

    before = replica_ids()
    config = json.loads(path.read_text())
    changed = next(p for p in config["pipeline_config_list"] if p["name"] == CHANGED)
    changed["outputs"] = [o for o in changed["outputs"] if "confidences" not in o]
    with Callers(url, CALLED_DURING_THE_RELOAD) as callers:
        path.write_text(json.dumps(config))
        answer = http.post("/v1/config/reload", timeout=300)
        assert answer.status_code == 201, answer.text
        assert answer.json()[CHANGED]["model_version_status"][0]["state"] == "AVAILABLE"
        outputs = {o["name"] for o in client.get_model_metadata(CHANGED)["outputs"]}
        sent = callers.sent
        wait_for(lambda: callers.sent >= sent + 4, timeout=120, what="calls after the reload")
    assert outputs == {"texts_string", "boxes"}
    assert {o["name"] for o in client.get_model_metadata(name(8))["outputs"]} == {
        "texts_string",
        "boxes",
        "confidences",
    }
    assert callers.failures == [] and callers.sent > 0
    assert replica_ids() == before  # the runner was reconfigured in place: no replica restarted
    assert texts(client, CHANGED) == LINES
    print(f"{callers.sent} calls to {', '.join(CALLED_DURING_THE_RELOAD)} during the reload, none failed")
