"""KServe v2 gRPC through Ray Serve's gRPC proxy, with tritonclient.grpc, on the session app that
also answers REST: the same ingress, the same answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests import factory
from tests.integration.test_kserve_server import astronaut_bgr_nchw
from tests.integration.test_pipelines import FACE, nchw, numbers


@pytest.fixture(scope="module")
def rpc(grpc_url):
    client = grpcclient.InferenceServerClient(grpc_url)
    yield client
    client.close()


def infer(rpc, model: str, name: str, data: np.ndarray, datatype: str = "FP32", **options):
    tensor = grpcclient.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return rpc.infer(model, [tensor], client_timeout=120, **options)


def status_of(caught: pytest.ExceptionInfo) -> str:
    return caught.value.status()


def test_server_live_ready_and_metadata(rpc):
    assert rpc.is_server_live() and rpc.is_server_ready()
    metadata = rpc.get_server_metadata(as_json=True)
    assert metadata["name"] == "rayvino" and metadata["version"] == factory.project_version()


def test_model_ready_and_a_missing_model_is_not_found(rpc):
    assert rpc.is_model_ready("face-detection")
    assert rpc.is_model_ready("specific", "3") and rpc.is_model_ready("add-sub")
    assert not rpc.is_model_ready("broken")  # known, not loaded: ready=false, as OVMS over gRPC
    with pytest.raises(InferenceServerException) as caught:
        rpc.is_model_ready("no-such-model")
    assert status_of(caught) == "StatusCode.NOT_FOUND"
    assert "Model with requested name is not found - 'no-such-model'" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        rpc.is_model_ready("specific", "2")
    assert status_of(caught) == "StatusCode.NOT_FOUND"


def test_model_metadata_equals_rest(rpc, client):
    metadata = rpc.get_model_metadata("face-detection", as_json=True)
    rest = client.get_model_metadata("face-detection")
    assert metadata["name"] == "face-detection" and metadata["platform"] == "OpenVINO"
    assert metadata["versions"] == rest["versions"] == ["1"]
    for side in ("inputs", "outputs"):  # protobuf's JSON writes int64 shapes as strings
        grpc_side = [{**t, "shape": [int(d) for d in t["shape"]]} for t in metadata[side]]
        assert grpc_side == rest[side]


def test_face_detection_answers_as_over_rest(rpc, client):
    image = astronaut_bgr_nchw()
    result = infer(rpc, "face-detection", "data", image, request_id="face-1")
    tensor = httpclient.InferInput("data", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    rest = client.infer("face-detection", [tensor]).as_numpy("detection_out")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("face-detection", "1", "face-1")
    np.testing.assert_array_equal(result.as_numpy("detection_out"), rest)
    detections = rest[0, 0]
    faces = detections[: np.argmax(detections[:, 0] == -1)]
    assert len(faces[faces[:, 2] > 0.5]) == 1


def test_wrong_input_name_is_invalid_argument_with_the_message(rpc):
    with pytest.raises(InferenceServerException) as caught:
        infer(rpc, "face-detection", "image", astronaut_bgr_nchw())
    assert status_of(caught) == "StatusCode.INVALID_ARGUMENT"
    assert "Unexpected input name" in caught.value.message()
    assert "'image'" in caught.value.message()


def test_an_unknown_version_is_not_found_and_the_server_keeps_serving(rpc):
    data = np.ones((1, 10), np.float32)
    with pytest.raises(InferenceServerException) as caught:
        infer(rpc, "specific", "b", data, model_version="2")
    assert status_of(caught) == "StatusCode.NOT_FOUND"
    assert "Model with requested version is not found" in caught.value.message()
    np.testing.assert_array_equal(infer(rpc, "specific", "b", data, model_version="3").as_numpy("a"), data + 3)


def test_a_pipeline_through_grpc(rpc):
    np.testing.assert_allclose(infer(rpc, "add-sub", "numbers", numbers(1.0)).as_numpy("result"), numbers(4.0))


def test_a_jpeg_sent_as_bytes_through_the_faces_pipeline(rpc):
    ok, jpeg = cv2.imencode(".jpg", skimage.data.astronaut()[:, :, ::-1])
    assert ok
    result = infer(rpc, "faces", "image", np.array([jpeg.tobytes()], dtype=object), datatype="BYTES")
    np.testing.assert_allclose(result.as_numpy("boxes")[0, 0] * 512, FACE, atol=6)


def test_no_demultiplexer_results_is_aborted_as_ovms_answers(rpc):
    # REST answers 204 with no body; gRPC has no empty success, and OVMS answers ABORTED.
    with pytest.raises(InferenceServerException) as caught:
        infer(rpc, "faces", "image", nchw(skimage.data.coffee()[:, :, ::-1]))
    assert status_of(caught) == "StatusCode.ABORTED"
    assert "Demultiplexer has no results" in caught.value.message()


def test_grpc_requests_are_counted_apart_from_rest(rpc, http):
    from tests.unit.test_metrics import sample

    labels = {"api": "KServe", "interface": "gRPC", "method": "ModelInfer", "name": "all", "version": "2"}
    before = sample(http.get("/metrics").text, "ovms_requests_success", **labels) or 0
    for _ in range(2):
        infer(rpc, "all", "b", np.zeros((1, 10), np.float32), model_version="2")
    assert sample(http.get("/metrics").text, "ovms_requests_success", **labels) == before + 2
