"""KServe v2 REST through the real Ray Serve app, with tritonclient (binary and JSON) and raw HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import MAX_REQUEST_BYTES, wait_for


def dummy_infer(client, model, version="", value=0.0, binary=True):
    data = np.full((1, 10), value, np.float32)
    tensor = triton.InferInput("b", [1, 10], "FP32")
    tensor.set_data_from_numpy(data, binary_data=binary)
    result = client.infer(
        model, [tensor], model_version=version, outputs=[triton.InferRequestedOutput("a", binary_data=binary)]
    )
    return result.as_numpy("a"), result.get_response()["model_version"]


def astronaut_bgr_nchw() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_astronaut_face_is_found(client, binary):
    image = astronaut_bgr_nchw()
    tensor = triton.InferInput("data", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image, binary_data=binary)
    result = client.infer(
        "face-detection", [tensor], outputs=[triton.InferRequestedOutput("detection_out", binary_data=binary)]
    )
    detections = result.as_numpy("detection_out")[0, 0]
    faces = detections[: np.argmax(detections[:, 0] == -1)]
    faces = faces[faces[:, 2] > 0.5]
    assert len(faces) == 1
    box = faces[0, 3:] * 512
    np.testing.assert_allclose(box, [179, 82, 271, 175], atol=5)


def test_server_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_model_metadata("face-detection")
    assert meta["inputs"] == [{"name": "data", "datatype": "FP32", "shape": [1, 3, -1, -1]}]
    assert meta["outputs"] == [{"name": "detection_out", "datatype": "FP32", "shape": [1, 1, 200, 7]}]


def test_the_running_front_door_is_not_taken_for_a_left_over_haproxy(client):
    """`make run` stops Ray HAProxies whose HAProxy manager is gone: the one serving this session,
    started by its live manager, must never look like one (app/leftovers.py)."""
    from app.leftovers import leftover_haproxies, ray_haproxies

    assert client.is_server_ready()
    assert ray_haproxies()
    assert leftover_haproxies() == []


def test_replicas_route_handle_calls_on_their_own_loop_and_this_driver_does_not(client):
    """app/serve_flags.py: Ray's worker processes (every replica) route Serve handle calls on their
    own event loop; a driver, whose blocking calls need Serve's router thread, keeps it."""
    import os

    import ray

    flag = "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"
    apps = ("rayvino", "model.face-detection")  # the front (its gRPC calls models over handles), a model
    named = ray.util.list_named_actors(all_namespaces=True)
    replicas = [a for a in named if a["name"].startswith(tuple(f"SERVE_REPLICA::{app}#" for app in apps))]
    assert {r["name"].split("#")[0] for r in replicas} == {f"SERVE_REPLICA::{app}" for app in apps}
    for replica in replicas:
        actor = ray.get_actor(replica["name"], namespace=replica["namespace"])
        assert ray.get(actor.__ray_call__.remote(lambda self: os.environ.get(flag)), timeout=60) == "0"
    assert os.environ.get(flag) != "0"


def test_latest_two_of_three_versions(client):
    assert not client.is_model_ready("latest", "1")
    assert client.is_model_ready("latest", "2") and client.is_model_ready("latest", "3")
    output, version = dummy_infer(client, "latest")
    assert version == "3" and output[0, 0] == 3.0
    assert dummy_infer(client, "latest", "2")[0][0, 0] == 2.0


def test_specific_versions_answer_404_for_the_others(client, http):
    assert client.is_model_ready("specific", "1") and client.is_model_ready("specific", "3")
    response = http.get("/v2/models/specific/versions/2/ready")
    assert response.status_code == 404
    assert "Model with requested version is not found" in response.json()["error"]
    with pytest.raises(InferenceServerException, match="version is not found"):
        dummy_infer(client, "specific", "2")
    assert dummy_infer(client, "specific", "1", binary=False)[0][0, 0] == 1.0


def test_all_versions_serve(client):
    for version in ("1", "2", "3"):
        assert dummy_infer(client, "all", version, value=10)[0][0, 0] == 10 + int(version)


def test_config_status_shows_every_version(http):
    status = http.get("/v1/config").json()
    assert [v["version"] for v in status["all"]["model_version_status"]] == ["1", "2", "3"]
    assert [v["version"] for v in status["specific"]["model_version_status"]] == ["1", "3"]
    (broken,) = status["broken"]["model_version_status"]
    assert broken["state"] == "LOADING" and broken["status"]["error_code"] == "UNKNOWN"
    assert "cannot read" in broken["status"]["error_message"]


GOOD_JSON = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10}]}
TRUNCATED = json.dumps(
    {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": 40}}]}
).encode()


@pytest.mark.parametrize(
    "path, kwargs, status, message",
    [
        ("/v2/models/all/infer", {"content": b'{"inputs": [{'}, 412, "not valid JSON"),
        (
            "/v2/models/all/infer",
            {"json": {"inputs": [{"name": "b", "shape": [1, 9], "datatype": "FP32", "data": [1.0] * 9}]}},
            400,
            "Invalid input shape - input 'b': expected (1,10), got (1,9)",
        ),
        (
            "/v2/models/all/infer",
            {"json": {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "INT32", "data": [1] * 10}]}},
            400,
            "Invalid input precision - input 'b': expected FP32, got INT32",
        ),
        ("/v2/models/unknown/infer", {"json": GOOD_JSON}, 404, "Model with requested name is not found"),
        ("/v2/models/all/versions/9/infer", {"json": GOOD_JSON}, 404, "Model with requested version is not found"),
        ("/v2/models/broken/infer", {"json": GOOD_JSON}, 404, "Model with requested version is not loaded yet"),
        (
            "/v2/models/all/infer",
            {"content": TRUNCATED + b"\0" * 12, "headers": {"Inference-Header-Content-Length": str(len(TRUNCATED))}},
            400,
            "declares binary_data_size 40, but only 12 bytes remain",
        ),
        ("/v2/models/all/infer", {"content": b"\0" * (MAX_REQUEST_BYTES + 1)}, 413, "Request body too large"),
    ],
    ids=[
        "malformed-json",
        "wrong-shape",
        "wrong-datatype",
        "unknown-model",
        "unknown-version",
        "not-loaded",
        "truncated-binary",
        "oversize",
    ],
)
def test_bad_requests_get_their_status_and_the_server_keeps_serving(http, client, path, kwargs, status, message):
    response = http.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert dummy_infer(client, "all", "2", value=1)[0][0, 0] == 3.0


def test_concurrent_requests_each_get_their_own_result(client):
    # tritonclient's HTTP client is gevent-based: concurrency comes from async_infer, not threads.
    pending = []
    for i in range(32):
        tensor = triton.InferInput("b", [1, 10], "FP32")
        tensor.set_data_from_numpy(np.full((1, 10), i, np.float32))
        pending.append(client.async_infer("all", [tensor], model_version="1"))
    for i, request in enumerate(pending):
        np.testing.assert_array_equal(request.get_result().as_numpy("a"), np.full((1, 10), i + 1.0))


def test_metrics_count_requests_with_ovms_names(client, http):
    from tests.unit.test_metrics import sample

    # A series no other test feeds: a replica reports its counts shortly after it serves, so
    # requests other tests sent a moment ago could still arrive and move a shared one.
    labels = {"api": "KServe", "interface": "REST", "method": "ModelInfer", "name": "specific", "version": "3"}
    before = sample(http.get("/metrics").text, "ovms_requests_success", **labels) or 0
    for value in range(3):
        dummy_infer(client, "specific", "3", value=value)

    def counted() -> str | None:
        text = http.get("/metrics").text
        return text if (sample(text, "ovms_requests_success", **labels) or 0) >= before + 3 else None

    text = wait_for(counted, timeout=60, what="the three requests in /metrics")
    assert sample(text, "ovms_requests_success", **labels) == before + 3  # each counted once
    assert sample(text, "ovms_inference_time_us_count", name="specific", version="3") >= 3
