"""Pipelines through the real app: the two demo pipelines on real images, C nodes compiled here,
failures that stay contained, and pipelines as models in the API."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import skimage.io
import tritonclient.http as triton
from PIL import Image, ImageDraw, ImageFont

from app.plan import runner_name
from tests.integration._load import SteadyLoad
from tests.integration.conftest import CONFIG_ACTOR, wait_for

FACE = np.array([179, 82, 271, 175])


def nchw(image_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_bgr.transpose(2, 0, 1)[None], dtype=np.float32)


def infer(client, pipeline: str, name: str, data: np.ndarray, datatype: str = "FP32", binary: bool = True):
    tensor = triton.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data, binary_data=binary)
    return client.infer(pipeline, [tensor])


def numbers(value: float = 1.0) -> np.ndarray:
    return np.full((1, 4), value, np.float32)


def texts(result) -> list[str]:
    return [t.decode() for t in result.as_numpy("texts_string").reshape(-1)]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_faces_pipeline_finds_the_astronaut_with_landmarks_in_the_box(client, binary):
    result = infer(client, "faces", "image", nchw(skimage.data.astronaut()[:, :, ::-1]), binary=binary)
    boxes = result.as_numpy("boxes")
    assert boxes.shape == (1, 1, 4) and result.as_numpy("confidences")[0, 0, 0] > 0.9
    box = boxes[0, 0] * 512
    np.testing.assert_allclose(box, FACE, atol=5)
    landmarks = result.as_numpy("landmarks").reshape(468, 3)[:, :2] / 192  # crop-relative
    points = box[:2] + landmarks * (box[2:] - box[:2])  # in image pixels
    centroid = points.mean(0)
    assert (box[:2] < centroid).all() and (centroid < box[2:]).all()
    margin = 0.1 * (box[2:] - box[:2])
    inside = ((points >= box[:2] - margin) & (points <= box[2:] + margin)).all(1)
    assert inside.mean() > 0.95


def test_faces_pipeline_decodes_a_jpeg_sent_as_bytes(client):
    ok, jpeg = cv2.imencode(".jpg", skimage.data.astronaut()[:, :, ::-1])
    assert ok
    result = infer(client, "faces", "image", np.array([jpeg.tobytes()], dtype=object), datatype="BYTES")
    np.testing.assert_allclose(result.as_numpy("boxes")[0, 0] * 512, FACE, atol=6)


def test_no_face_answers_204(http):
    coffee = nchw(skimage.data.coffee()[:, :, ::-1])
    response = http.post(
        "/v2/models/faces/infer",
        json={
            "inputs": [
                {"name": "image", "shape": list(coffee.shape), "datatype": "FP32", "data": coffee.ravel().tolist()}
            ]
        },
    )
    assert response.status_code == 204 and response.content == b""


def test_ocr_pipeline_reads_the_scanned_page(client):
    page = skimage.io.imread(Path(skimage.data.__file__).parent / "page.png")
    result = infer(client, "ocr", "image", nchw(np.repeat(page[:, :, None], 3, axis=2)))
    lines = texts(result)
    assert len(lines) == 7
    assert lines[0] == "Region-based segmentation"
    for words in ("Let us first determine markers of the coins and the", "histogram", "unambiguously"):
        assert any(words in line for line in lines), (words, lines)
    assert result.as_numpy("boxes").shape == (7, 4)


def test_ocr_pipeline_reads_rendered_text_exactly(client):
    lines = ["OpenVINO Model Server", "KServe v2 42.5%"]
    image = Image.new("RGB", (640, 180), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for row, line in enumerate(lines):
        draw.text((30, 30 + 80 * row), line, fill="black", font=font)
    result = infer(client, "ocr", "image", nchw(np.asarray(image)[:, :, ::-1]))
    assert texts(result) == lines


def test_a_c_node_written_and_compiled_by_a_user_runs_unchanged(client):
    np.testing.assert_allclose(infer(client, "scale", "numbers", numbers(2.0)).as_numpy("result"), numbers(5.0))


def test_many_concurrent_requests_pass_large_tensors_between_node_deployments(model_server):
    """scale-twice's first node answers the pipeline replica, which sends that tensor on to the
    second node's replica: 400 requests of 200 KB, 16 at a time, each answered with its own data.
    (Such tensors once went between replicas as object references, and Ray freed one now and
    then before the second node read it: ReferenceCountingAssertionError, a 500.)"""
    client = triton.InferenceServerClient(model_server, concurrency=16, network_timeout=120)
    try:
        sent, pending = [], []
        for i in range(400):
            data = np.full((1, 50_000), i, np.float32)
            data[0, -1] = -i  # not a constant tensor: a mixed-up or stale buffer shows
            tensor = triton.InferInput("numbers", list(data.shape), "FP32")
            tensor.set_data_from_numpy(data, binary_data=True)
            sent.append(data)
            pending.append(client.async_infer("scale-twice", [tensor]))
        for data, request in zip(sent, pending, strict=True):
            np.testing.assert_array_equal(request.get_result().as_numpy("result"), data * 5)
    finally:
        client.close()


def test_add_sub_with_and_without_its_params(client, http):
    np.testing.assert_allclose(infer(client, "add-sub", "numbers", numbers(1.0)).as_numpy("result"), numbers(4.0))
    response = http.post(
        "/v2/models/add-sub-without-params/infer",
        json={"inputs": [{"name": "numbers", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
    )
    assert response.status_code == 500
    assert "Custom node failed during execution" in response.json()["error"]


def test_a_c_node_run_inline_answers_as_in_its_own_deployment(client, http):
    """add-sub-inline is add-sub with its node inside the pipeline's replica: same answer, same
    metadata, and no deployment of its own."""
    np.testing.assert_allclose(
        infer(client, "add-sub-inline", "numbers", numbers(1.0)).as_numpy("result"), numbers(4.0)
    )
    assert client.get_model_metadata("add-sub-inline")["inputs"] == client.get_model_metadata("add-sub")["inputs"]
    from ray import serve

    applications = serve.status().applications
    assert "node.add-sub.node" in applications and "node.add-sub-inline.node" not in applications
    assert "node.ocr.crop" not in applications  # the demo pipelines run their nodes inline too


def test_a_crashing_node_fails_its_request_only(client, http):
    pending = [client.async_infer("scale", [_numbers_input(i)]) for i in range(8)]
    response = http.post(
        "/v2/models/crashing/infer",
        json={"inputs": [{"name": "numbers", "shape": [1, 4], "datatype": "FP32", "data": [13, 0, 0, 0]}]},
    )
    assert response.status_code == 500 and "crashed with SIGSEGV" in response.json()["error"]
    for i, request in enumerate(pending):
        np.testing.assert_allclose(request.get_result().as_numpy("result"), numbers(i * 2.5))
    # Serve replaces the replica that fails its health check: the pipeline answers again.
    wait_for(lambda: _crashing_answers(http), timeout=120, what="the crashed node's replica to be replaced")


def test_a_crashing_inline_node_answers_500_and_costs_no_request_of_the_other_pipelines(model_server, http):
    """The crash guard catches the segfault inside the pipeline runner, where crashing-inline runs
    beside the other shared pipelines: that request answers 500, and Serve replaces the runner's
    replica that failed its health check. Clients calling add-sub-inline, in the same runner (and
    a model and a pipeline elsewhere), all along lose no request; nothing else restarts."""
    before = replica_ids()
    with SteadyLoad(model_server, "a C node crashing in the pipeline runner") as load:
        response = http.post(
            "/v2/models/crashing-inline/infer",
            json={"inputs": [{"name": "numbers", "shape": [1, 4], "datatype": "FP32", "data": [13, 0, 0, 0]}]},
        )
        assert response.status_code == 500, response.text
        assert "crashed with SIGSEGV" in response.json()["error"], response.text
        wait_for(
            lambda: _crashing_answers(http, "crashing-inline"), timeout=120, what="the runner's replica to be replaced"
        )
        sent_at_replacement = load.sent
        wait_for(lambda: load.sent > sent_at_replacement + 5, what="the clients to be answered by the new runner")
    assert load.failures == [], load.failures[:5]
    runner = runner_name((CONFIG_ACTOR, "serve"))
    wait_for(lambda: replica_ids()[runner], what="the replacement to be listed")
    after = replica_ids()
    assert after[runner].isdisjoint(before[runner])
    restarted = {app for app in before.keys() & after.keys() if before[app] - after[app]}
    assert restarted == {runner}  # a replica running before is gone only in the runner


def replica_ids() -> dict[str, set[str]]:
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    return {
        app: {r["replica_id"] for d in info["deployments"].values() for r in d["replicas"] if r["state"] == "RUNNING"}
        for app, info in details["applications"].items()
    }


def _numbers_input(value: float, name: str = "numbers"):
    tensor = triton.InferInput(name, [1, 4], "FP32")
    tensor.set_data_from_numpy(numbers(value))
    return tensor


def _crashing_answers(http, pipeline: str = "crashing") -> bool:
    response = http.post(
        f"/v2/models/{pipeline}/infer",
        json={"inputs": [{"name": "numbers", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
    )
    return response.status_code == 200


def test_pipelines_are_models_in_the_api(client, http):
    meta = client.get_model_metadata("ocr")
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [1, 3, -1, -1]}]
    assert {o["name"] for o in meta["outputs"]} == {"texts_string", "boxes", "confidences"}
    assert client.is_model_ready("faces") and client.is_model_ready("ocr", "1")
    status = http.get("/v1/config").json()
    assert status["ocr"]["model_version_status"][0]["state"] == "AVAILABLE"


def test_an_invalid_pipeline_stays_registered_and_not_ready(client, http):
    (line,) = http.get("/v1/config").json()["unknown-model-pipeline"]["model_version_status"]
    assert (line["state"], line["status"]["error_code"]) == ("LOADING", "FAILED_PRECONDITION")
    assert "no-such-model" in line["status"]["error_message"] and "'m'" in line["status"]["error_message"]
    response = http.get("/v2/models/unknown-model-pipeline/ready")
    assert response.status_code == 404
    assert client.is_model_ready("ocr")  # the rest of the config serves
