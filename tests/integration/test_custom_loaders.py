"""Custom loaders through the real app: the loader actor, its polling and every replica following it."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from tests import factory
from tests.integration.conftest import issue_licence, wait_for

TIMED_SECONDS = 4


def status_of(http, model: str, version: int) -> tuple[str, str, str]:
    for line in http.get("/v1/config").json()[model]["model_version_status"]:
        if line["version"] == str(version):
            return line["state"], line["status"]["error_code"], line["status"]["error_message"]
    return ("ABSENT", "", "")


def wait_state(http, model: str, version: int, state: str, timeout: float = 20) -> tuple[str, str, str]:
    return wait_for(
        lambda: (s := status_of(http, model, version))[0] == state and s,
        timeout=timeout,
        what=f"{model} version {version} to be {state}",
    )


def ready(http, model: str, version: int) -> int:
    return http.get(f"/v2/models/{model}/versions/{version}/ready").status_code


def infer(client, model: str, version: str = "", value: float = 0.0) -> np.ndarray:
    tensor = triton.InferInput("b", [1, 10], "FP32")
    tensor.set_data_from_numpy(np.full((1, 10), value, np.float32))
    return client.infer(model, [tensor], model_version=version).as_numpy("a")


def burst(client, model: str, version: str, count: int = 64) -> list[int]:
    """``count`` concurrent requests; each one's HTTP status (200 or the error's)."""
    pending = []
    for _ in range(count):
        tensor = triton.InferInput("b", [1, 10], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 10), np.float32))
        pending.append(client.async_infer(model, [tensor], model_version=version))
    codes = []
    for request in pending:
        try:
            request.get_result()
            codes.append(200)
        except triton.InferenceServerException as exc:
            codes.append(int(exc.status()))
    return codes


def test_prediction_through_a_loader(client, http):
    assert status_of(http, "sample", 1)[:2] == ("AVAILABLE", "OK")
    assert infer(client, "sample", "1", value=5)[0, 0] == 6.0
    assert infer(client, "sample")[0, 0] == 2.0  # default: the highest available version


def test_a_loader_given_by_a_relative_path_and_two_loaders_at_once(client):
    assert infer(client, "relative", "2")[0, 0] == 2.0
    assert infer(client, "sample", "2")[0, 0] == 2.0


def test_duplicate_loader_name_keeps_the_first(client):
    # "sample" is defined twice; the second (a missing file) is ignored, the first serves.
    assert infer(client, "sample", "1")[0, 0] == 1.0


def test_unknown_loader_name_gives_404_with_the_reason(http):
    state, code, message = status_of(http, "unknown-loader", 1)
    assert (state, code) == ("LOADING", "UNKNOWN") and "CUSTOM_LOADER_NOT_PRESENT" in message
    assert ready(http, "unknown-loader", 1) == 404
    response = http.post(
        "/v2/models/unknown-loader/infer",
        json={"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}]},
    )
    assert response.status_code == 404 and "not loaded yet" in response.json()["error"]


def test_missing_model_files_leave_the_version_loading(http):
    state, code, message = status_of(http, "missing", 1)
    assert (state, code) == ("LOADING", "UNKNOWN") and "absent.xml" in message


def test_blacklist_ends_the_version_and_revoking_serves_it_again(client, http, served_dir):
    enable = served_dir / "sample" / "1" / "sample.status"
    enable.write_text("DISABLED\n")
    wait_state(http, "sample", 1, "END", timeout=60)
    assert status_of(http, "sample", 1)[1:] == ("OK", "OK")
    assert ready(http, "sample", 1) == 404
    # Two replicas serve "sample": after the transition no request may reach a stale one.
    assert set(burst(client, "sample", "1")) == {404}
    assert set(burst(client, "sample", "2")) == {200}  # the other version is untouched
    enable.write_text("")
    wait_state(http, "sample", 1, "AVAILABLE", timeout=60)
    # Each replica loads the version back on its own, so the first ones to answer 200 may not
    # be all of them yet; every replica must get there.
    wait_for(lambda: set(burst(client, "sample", "1")) == {200}, timeout=60, what="sample v1 on every replica")


def test_a_version_blacklisted_at_start_loads_when_enabled(client, http, served_dir):
    state, code, message = status_of(http, "late", 1)
    assert (state, code) == ("LOADING", "UNKNOWN") and "MODEL_BLACKLISTED" in message
    assert ready(http, "late", 1) == 404
    (served_dir / "late" / "1" / "late.status").unlink()
    wait_state(http, "late", 1, "AVAILABLE", timeout=60)
    wait_for(lambda: ready(http, "late", 1) == 200, timeout=60, what="late v1 ready")
    assert infer(client, "late", "1")[0, 0] == 1.0


def test_timed_unload_and_reload(timed):
    http = timed
    wait_state(http, "timed", 1, "END", timeout=60)
    assert ready(http, "timed", 1) == 404
    wait_state(http, "timed", 1, "AVAILABLE", timeout=60)
    wait_state(http, "timed", 1, "END", timeout=60)  # and again: it repeats


def test_encrypted_model_round_trip(client):
    assert infer(client, "secret", "2", value=1)[0, 0] == 3.0


def test_wrong_key_is_reported_and_never_logged(http, served_dir):
    state, code, message = status_of(http, "secret-wrong-key", 1)
    assert (state, code) == ("LOADING", "UNKNOWN")
    assert "decrypt" in message.lower()
    keys = [(served_dir / name).read_text().strip() for name in ("right.key", "wrong.key")]
    forms = {k for key in keys for k in (key, base64.b64decode(key).hex())}
    import ray

    logs = __import__("pathlib").Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    for path in logs.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not any(form in text for form in forms), f"a key appears in {path.name}"
    assert not any(form in http.get("/v1/config").text for form in forms)


def test_licence_expiry_and_renewal(client, http, served_dir):
    assert infer(client, "licensed", "1")[0, 0] == 1.0
    issue_licence(served_dir, "2020-01-01")
    wait_state(http, "licensed", 1, "END", timeout=60)
    assert ready(http, "licensed", 1) == 404
    issue_licence(served_dir, "2099-01-01")
    wait_state(http, "licensed", 1, "AVAILABLE", timeout=60)
    wait_for(lambda: ready(http, "licensed", 1) == 200, timeout=60, what="licensed v1 ready")


def test_reload_polls_and_answers_with_the_status(http):
    response = http.post("/v1/config/reload")
    assert response.status_code in (200, 201)
    assert response.json()["sample"]["model_version_status"][0]["version"] == "1"


@contextlib.contextmanager
def loader_app(ray_cluster, base: Path, name: str, options: dict, args: dict):
    """An app of its own serving one loader-backed model ``name`` (versions 1 and 2) through the
    sample loader with ``options``; yields an HTTP client for it and the model's folder."""
    import httpx
    import ray
    from ray import serve

    from app.build import build_app

    factory.write_dummy(base / name, [1, 2])
    loader_options = {"loader_name": "sample", "model_file": "model.xml", "bin_file": "model.bin", **options}
    config = {
        "custom_loader_config_list": [
            {"config": {"loader_name": "sample", "library_path": "loaders.sample:SampleLoader"}}
        ],
        "model_config_list": [
            {
                "config": {
                    "name": name,
                    "base_path": name,
                    "model_version_policy": {"all": {}},
                    "custom_loader_options": loader_options,
                }
            }
        ],
    }
    (base / "config.json").write_text(json.dumps(config))
    suffix = uuid.uuid4().hex[:6]
    config_actor, loader_actor = f"{name}-config-{suffix}", f"{name}-loader-{suffix}"
    all_args = {
        "config_path": str(base / "config.json"),
        "loader_actor_name": loader_actor,
        "config_actor_name": config_actor,
        "grpc_port": 0,  # the session app has the gRPC port
        **args,
    }
    serve.run(build_app(all_args), name=name, route_prefix=f"/{name}")
    with httpx.Client(base_url=f"http://{ray_cluster}/{name}", timeout=120) as http:
        wait_for(lambda: http.get("/v2/health/ready").status_code == 200, timeout=300, what=f"the {name} app")
        yield http, base / name
    ray.get(ray.get_actor(config_actor, namespace="rayvino").shutdown.remote())  # its model app, its loaders
    serve.delete(name)
    ray.kill(ray.get_actor(config_actor, namespace="rayvino"), no_restart=True)


@pytest.fixture(scope="module")
def unwatched(ray_cluster, tmp_path_factory):
    """The watcher off (``file_system_poll_wait_seconds: 0``) and two replicas: only
    ``POST /v1/config/reload`` checks the model's blacklist."""
    args = {"file_system_poll_wait_seconds": 0, "deployments": {"model.unwatched": {"num_replicas": 2}}}
    options = {"enable_file": "unwatched.status"}
    with loader_app(ray_cluster, tmp_path_factory.mktemp("unwatched"), "unwatched", options, args) as app:
        yield app


@pytest.fixture(scope="module")
def timed(ray_cluster, tmp_path_factory):
    """A model the sample loader unloads and reloads every few seconds, for as long as it serves.
    In an app of its own: in the session app it would change something under every other test."""
    options = {"unload_after_seconds": str(TIMED_SECONDS), "reload_after_seconds": str(TIMED_SECONDS)}
    with loader_app(ray_cluster, tmp_path_factory.mktemp("timed"), "timed", options, {}) as app:
        yield app[0]


def infer_status(http, model: str, version: int) -> int:
    body = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}]}
    return http.post(f"/v2/models/{model}/versions/{version}/infer", json=body).status_code


def test_a_reload_with_the_watcher_off_checks_the_blacklist_and_answers_once_replicas_follow(unwatched):
    """As in OVMS, the reload runs the watcher's path: the version is END, and 404 on every replica,
    as soon as the reload answers; lifting the blacklist and reloading serves it again."""
    http, folder = unwatched
    enable = folder / "1" / "unwatched.status"
    assert status_of(http, "unwatched", 1)[0] == "AVAILABLE"
    enable.write_text("DISABLED\n")
    response = http.post("/v1/config/reload")
    assert response.status_code == 201
    assert response.json()["unwatched"]["model_version_status"][0]["state"] == "END"
    assert status_of(http, "unwatched", 1)[:2] == ("END", "OK")
    for _ in range(8):  # two replicas: each one must refuse the version
        assert ready(http, "unwatched", 1) == 404 and infer_status(http, "unwatched", 1) == 404
    assert infer_status(http, "unwatched", 2) == 200
    assert http.post("/v1/config/reload").status_code == 200  # nothing changed since
    enable.write_text("")
    assert http.post("/v1/config/reload").status_code == 201
    assert status_of(http, "unwatched", 1)[0] == "AVAILABLE"
    for _ in range(8):
        assert infer_status(http, "unwatched", 1) == 200
