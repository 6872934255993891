"""OVMS custom loader libraries in C++ through the real app: the shim, the loader actor, replicas.

The libraries are real and compiled here with g++: the project's build of OVMS's sample loader
(named by OVMS's own path, /ovms/custom_loader/libsampleloader.so) and a test loader written as
an OVMS user writes one (tests/cpp_loaders/test_loader.cpp).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from tests import factory
from tests.cpp_loaders import build_test_loader
from tests.integration.conftest import wait_for
from tests.integration.test_custom_loaders import ready, status_of, wait_state
from tests.integration.test_kserve_server import astronaut_bgr_nchw

# Apps of their own (seven models; a loader actor restart) on a machine that may be busy.
pytestmark = pytest.mark.timeout(600)

LOADERS = [
    ("sampleloader", "/ovms/custom_loader/libsampleloader.so", "sampleloader.cfg"),
    ("tester", "lib/libtestloader.so", "tester.cfg"),
    ("init-throws", "lib/libtestloader.so", "throws.cfg"),
    ("no-create", "lib/libtestloader_no_create.so", None),
    ("leaving", "lib/libtestloader.so", "leaving.cfg"),
]
FACE = {"loader_name": "sampleloader", "xml_file": "face.xml", "bin_file": "face.bin", "enable_file": "face.status"}
# Deployments are named after their model cluster-wide: these names must not be the session app's.
MODELS = {
    "cpp-face": ("face", FACE),
    "cpp-dummy": ("dummy", {"loader_name": "tester"}),
    "cpp-throws": ("dummy", {"loader_name": "tester", "behaviour": "throw"}),
    "cpp-load-error": ("dummy", {"loader_name": "tester", "behaviour": "error"}),
    "cpp-init-failed": ("dummy", {"loader_name": "init-throws"}),
    "cpp-no-create": ("dummy", {"loader_name": "no-create"}),
    "cpp-leaver": ("dummy", {"loader_name": "leaving"}),
}


def write_config(base: Path, loaders: list, models: dict) -> None:
    config = {
        "custom_loader_config_list": [
            {"config": {"loader_name": n, "library_path": p, **({"loader_config_file": c} if c else {})}}
            for n, p, c in loaders
        ],
        "model_config_list": [
            {"config": {"name": name, "base_path": folder, "custom_loader_options": options}}
            for name, (folder, options) in models.items()
        ],
    }
    (base / "config.json").write_text(json.dumps(config))


@contextlib.contextmanager
def config_app(ray_cluster, base: Path, name: str):
    """An app of its own for ``base/config.json``; yields an HTTP client for it."""
    import httpx
    import ray
    from ray import serve

    from app.build import build_app

    suffix = uuid.uuid4().hex[:6]
    config_actor = f"{name}-config-{suffix}"
    args = {
        "config_path": str(base / "config.json"),
        "loader_actor_name": f"{name}-loader-{suffix}",
        "config_actor_name": config_actor,
        "grpc_port": 0,  # the session app has the gRPC port
    }
    serve.run(build_app(args), name=name, route_prefix=f"/{name}")
    with httpx.Client(base_url=f"http://{ray_cluster}/{name}", timeout=120) as http:
        wait_for(lambda: http.get("/v2/health/ready").status_code == 200, timeout=300, what=f"the {name} app")
        yield http
    ray.get(ray.get_actor(config_actor, namespace="rayvino").shutdown.remote())
    serve.delete(name)
    ray.kill(ray.get_actor(config_actor, namespace="rayvino"), no_restart=True)


def hook_log(base: Path, config: str) -> list[str]:
    path = base / f"{config}.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def cpp(ray_cluster, demo_models, tmp_path_factory):
    base = tmp_path_factory.mktemp("cpp")
    (base / "face" / "1").mkdir(parents=True)
    for suffix in ("xml", "bin"):
        shutil.copy(demo_models / "face-detection" / "1" / f"model.{suffix}", base / "face" / "1" / f"face.{suffix}")
    factory.write_dummy(base / "dummy", [1])
    build_test_loader(base / "lib")
    build_test_loader(base / "lib", "NO_CREATE")
    (base / "sampleloader.cfg").write_text("ENABLE_FORCE_BLACKLIST_CHECK\n")
    (base / "tester.cfg").write_text("")
    (base / "throws.cfg").write_text("throw\n")
    (base / "leaving.cfg").write_text("")
    write_config(base, LOADERS, MODELS)
    with config_app(ray_cluster, base, "cpp") as http:
        yield http, base


def test_the_cpp_sample_serves_the_face_model(cpp, ray_cluster):
    http, _ = cpp
    assert status_of(http, "cpp-face", 1)[:2] == ("AVAILABLE", "OK")
    client = triton.InferenceServerClient(f"{ray_cluster}/cpp", network_timeout=120)
    image = astronaut_bgr_nchw()
    tensor = triton.InferInput("data", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    detections = client.infer("cpp-face", [tensor]).as_numpy("detection_out")[0, 0]
    faces = detections[: np.argmax(detections[:, 0] == -1)]
    faces = faces[faces[:, 2] > 0.5]
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0, 3:] * 512, [179, 82, 271, 175], atol=5)


def test_the_cpp_sample_blacklists_and_revokes(cpp):
    http, base = cpp
    enable = base / "face" / "1" / "face.status"
    enable.write_text("DISABLED\n")
    try:
        wait_state(http, "cpp-face", 1, "END", timeout=60)
        assert status_of(http, "cpp-face", 1)[1:] == ("OK", "OK")
        assert ready(http, "cpp-face", 1) == 404
    finally:
        enable.unlink()
    wait_state(http, "cpp-face", 1, "AVAILABLE", timeout=60)
    wait_for(lambda: ready(http, "cpp-face", 1) == 200, timeout=60, what="cpp-face ready again")


def test_a_loader_given_by_a_relative_path_serves(cpp):
    http, _ = cpp
    body = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10}]}
    response = http.post("/v2/models/cpp-dummy/infer", json=body)
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [2.0] * 10


@pytest.mark.parametrize(
    "model, message",
    [
        ("cpp-throws", "INTERNAL_ERROR: loadModel threw std::runtime_error: no licence for cpp-throws"),
        ("cpp-load-error", "FILE_INVALID: load_model returned MODEL_LOAD_ERROR"),
        ("cpp-init-failed", "loaderInit threw std::runtime_error: the licence server is unreachable"),
        ("cpp-no-create", "does not export createCustomLoader"),
    ],
)
def test_a_failing_cpp_loader_leaves_its_model_loading_with_the_reason(cpp, model, message):
    http, _ = cpp
    state, code, said = status_of(http, model, 1)
    assert (state, code) == ("LOADING", "UNKNOWN") and message in said
    assert ready(http, model, 1) == 404


def test_the_init_failure_names_its_status(cpp):
    http, _ = cpp
    assert status_of(http, "cpp-init-failed", 1)[2].startswith("CUSTOM_LOADER_INIT_FAILED")
    assert status_of(http, "cpp-no-create", 1)[2].startswith("CUSTOM_LOADER_LIBRARY_LOAD_FAILED")


def test_a_loader_leaving_the_config_is_deinitialised_and_deleted_once(cpp):
    # Last in this module: it changes the app's config.
    http, base = cpp
    assert status_of(http, "cpp-leaver", 1)[0] == "AVAILABLE"
    write_config(
        base,
        [entry for entry in LOADERS if entry[0] != "leaving"],
        {k: v for k, v in MODELS.items() if k != "cpp-leaver"},
    )
    assert http.post("/v1/config/reload").status_code in (200, 201)
    wait_for(
        lambda: "~TestLoader" in hook_log(base, "leaving.cfg"), timeout=120, what="the leaving loader's destructor"
    )
    assert hook_log(base, "leaving.cfg") == [
        "loaderInit",
        "loadModel cpp-leaver 1",
        "unloadModel cpp-leaver 1",
        "retireModel cpp-leaver",
        "loaderDeInit",
        "~TestLoader",
    ]
    assert status_of(http, "cpp-face", 1)[0] == "AVAILABLE"  # the others are untouched


def test_a_segfaulting_load_restarts_the_loader_and_other_models_keep_serving(ray_cluster, tmp_path):
    factory.write_dummy(tmp_path / "dummy", [1])
    build_test_loader(tmp_path / "lib")
    (tmp_path / "tester.cfg").write_text("")
    loaders = [("tester", "lib/libtestloader.so", "tester.cfg")]
    steady = {"cpp-steady": ("dummy", {"loader_name": "tester"})}
    write_config(tmp_path, loaders, {**steady, "cpp-crasher": ("dummy", {"loader_name": "tester"})})
    with config_app(ray_cluster, tmp_path, "cpp-crash") as http:
        assert status_of(http, "cpp-crasher", 1)[0] == "AVAILABLE"
        with steady_requests(http) as answers:  # throughout the crash and the loader actor's restart
            crash = {"loader_name": "tester", "behaviour": "crash"}
            write_config(tmp_path, loaders, {**steady, "cpp-crasher": ("dummy", crash)})
            assert http.post("/v1/config/reload").status_code in (200, 201)
            state, code, message = wait_for(
                lambda: "crashed" in (s := status_of(http, "cpp-crasher", 1))[2] and s,
                timeout=120,
                what="the crash to be reported",
            )
            wait_for(lambda: len(answers) > 20, timeout=60, what="more answers from steady")
        assert (state, code) == ("LOADING", "UNKNOWN")
        assert "died (crashed) in loader 'tester' load_model for model 'cpp-crasher' version 1" in message
        assert hook_log(tmp_path, "tester.cfg").count("loaderInit") >= 2  # the restarted actor initialised it again
        assert set(answers) == {200}, answers
        assert ready(http, "cpp-crasher", 1) == 404
        # That the call is tried again once CRASH_RETRY_SECONDS have passed is a unit test's.


@contextlib.contextmanager
def steady_requests(http):
    """Requests to model 'cpp-steady', one after another in a thread; yields the list of their statuses."""
    import httpx

    body = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1] * 10}]}
    answers: list[int] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=http.base_url, timeout=120) as own:  # a client per thread
            while not stop.is_set():
                answers.append(own.post("/v2/models/cpp-steady/infer", json=body).status_code)
                time.sleep(0.05)

    thread = threading.Thread(target=send)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join()
