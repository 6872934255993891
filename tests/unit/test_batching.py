"""Dynamic batching's Ray-free core (app/batching.py) on real OpenVINO models, without Ray."""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from app.batching import BatchedModel
from app.config import parse_config
from app.errors import InvalidOutput, InvalidPrecision, MissingInput, ModelVersionNotFound
from app.inference import InferRequest, InferResponse, RequestedOutput
from app.model import ModelServable
from app.status import ErrorCode, ModelVersionState
from tests import factory


def servable(base: Path, batched: bool, name: str = "m", **fields) -> ModelServable:
    config = parse_config({"model_config_list": [{"config": {"name": name, "base_path": str(base), **fields}}]})
    model = ModelServable(config.models[0], batched=batched)
    model.load()
    return model


def run_batch(model: ModelServable, requests: list[InferRequest]) -> tuple[list, dict[int, int]]:
    batched = BatchedModel(model)
    return asyncio.run(batched.infer(requests)), dict(batched.sizes)


def run_alone(model: ModelServable, request: InferRequest) -> InferResponse:
    return asyncio.run(model.infer(request))


def assert_same_outputs(got: InferResponse, expected: InferResponse) -> None:
    assert got.outputs.keys() == expected.outputs.keys()
    for name in expected.outputs:
        np.testing.assert_array_equal(got.outputs[name], expected.outputs[name])


@pytest.fixture
def batchable(tmp_path) -> Path:
    base = tmp_path / "batchable"
    factory.save(factory.batchable(), base / "1")
    return base


def xn(value: float, rows: int = 1, **kwargs) -> InferRequest:
    x = np.arange(4 * rows, dtype=np.float32).reshape(rows, 4) * value
    n = np.full((rows, 1), int(value), np.int32)
    return InferRequest("m", None, {"x": x, "n": n}, **kwargs)


def test_merged_requests_get_the_results_they_would_get_alone(batchable):
    batched, plain = servable(batchable, True), servable(batchable, False)
    requests = [xn(i + 1, id=f"r{i}") for i in range(8)]
    responses, sizes = run_batch(batched, requests)
    assert sizes == {8: 1}  # one inference for all eight
    for request, response in zip(requests, responses, strict=True):
        assert response.id == request.id and response.model_version == 1
        assert_same_outputs(response, run_alone(plain, request))


def test_requests_of_several_rows_are_split_back_by_their_own_row_counts(batchable):
    batched = servable(batchable, True)
    requests = [xn(1, rows=1), xn(2, rows=3), xn(3, rows=2)]
    responses, sizes = run_batch(batched, requests)
    assert sizes == {3: 1}
    for request, response in zip(requests, responses, strict=True):
        assert response.outputs["total"].shape == (request.inputs["x"].shape[0], 1)
        np.testing.assert_array_equal(response.outputs["total"], request.inputs["x"].sum(axis=1, keepdims=True))
        np.testing.assert_array_equal(response.outputs["shifted"], request.inputs["x"] + request.inputs["n"])


def test_only_requests_that_agree_share_an_inference(tmp_path, batchable):
    factory.save(factory.batchable(), batchable / "2")
    batched = servable(batchable, True, model_version_policy={"all": {}})
    requests = [
        xn(1),
        xn(2),  # version 2 (the default), every output
        xn(3, outputs=[RequestedOutput("total")]),
        xn(4, outputs=[RequestedOutput("total")]),  # fewer outputs
        InferRequest("m", 1, xn(5).inputs),  # another version, alone
    ]
    responses, sizes = run_batch(batched, requests)
    assert sizes == {2: 2, 1: 1}
    assert [r.model_version for r in responses] == [2, 2, 2, 2, 1]
    assert [sorted(r.outputs) for r in responses] == [["shifted", "total"]] * 2 + [["total"]] * 2 + [
        ["shifted", "total"]
    ]
    for request, response in zip(requests, responses, strict=True):
        np.testing.assert_array_equal(response.outputs["total"], request.inputs["x"].sum(axis=1, keepdims=True))


def test_inputs_with_other_trailing_dims_run_apart(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1], shape=(1, 3, -1))
    batched = servable(base, True)
    requests = [InferRequest("m", None, {"b": np.full((1, 3, width), width, np.float32)}) for width in (2, 5, 2, 5, 7)]
    responses, sizes = run_batch(batched, requests)
    assert sizes == {2: 2, 1: 1}
    for request, response in zip(requests, responses, strict=True):
        np.testing.assert_array_equal(response.outputs["a"], request.inputs["b"] + 1)


def test_a_bad_request_fails_alone_with_its_own_error(batchable):
    batched, plain = servable(batchable, True), servable(batchable, False)
    good = [xn(1), xn(2), xn(3)]
    requests = [
        good[0],
        InferRequest("m", None, {"x": xn(9).inputs["x"]}),  # missing n
        good[1],
        InferRequest("m", None, {"x": xn(9).inputs["x"], "n": np.ones((1, 1), np.float32)}),  # n of the wrong type
        xn(9, outputs=[RequestedOutput("nope")]),
        InferRequest("m", 7, xn(9).inputs),  # no such version
        good[2],
    ]
    responses, sizes = run_batch(batched, requests)
    assert sizes == {3: 1}
    assert [type(r) for r in responses] == [
        InferResponse,
        MissingInput,
        InferResponse,
        InvalidPrecision,
        InvalidOutput,
        ModelVersionNotFound,
        InferResponse,
    ]
    assert "input 'n' of model 'm' is missing" in str(responses[1])
    for index, request in zip((0, 2, 6), good, strict=True):
        assert_same_outputs(responses[index], run_alone(plain, request))


def test_a_merged_inference_that_fails_is_retried_request_by_request(tmp_path):
    # two_inputs adds k [1] to every row of x: k is no batch, so merging k's gives [2] that does not
    # broadcast against x [2,3] and the merged inference fails. Each request then runs on its own.
    factory.save(factory.two_inputs(), tmp_path / "two" / "1")
    batched = servable(tmp_path / "two", True)
    requests = [
        InferRequest("m", None, {"x": np.full((1, 3), i, np.float32), "k": np.array([10 * i], np.int32)})
        for i in (1, 2)
    ]
    responses, sizes = run_batch(batched, requests)
    assert sizes == {1: 2}
    for i, response in zip((1, 2), responses, strict=True):
        np.testing.assert_array_equal(response.outputs["sum"], np.full((1, 3), 11 * i, np.float32))


def test_batching_makes_dim_0_dynamic_in_metadata(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1])
    assert servable(base, False).metadata(None)["inputs"][0]["shape"] == [1, 10]
    batched = servable(base, True, shape="(1,10)")  # the configured batch of 1 is what batching replaces
    assert batched.metadata(None)["inputs"][0]["shape"] == [-1, 10]
    assert batched.metadata(None)["outputs"][0]["shape"] == [-1, 10]


def test_a_model_whose_outputs_fold_the_batch_refuses_batching(tmp_path):
    factory.save(factory.flattening(), tmp_path / "flat" / "1")
    (status,) = servable(tmp_path / "flat", True, name="flat").statuses()
    assert (status.state, status.error_code) == (ModelVersionState.LOADING, ErrorCode.UNKNOWN)
    assert (
        "dynamic_batching is set for model 'flat', which cannot batch: output 'flat' has shape [1,?]"
        in status.error_message
    )
    assert servable(tmp_path / "flat", False).statuses()[0].available  # unbatched it serves as before


def test_face_detection_refuses_batching_naming_its_detection_table(demo_models):
    (status,) = servable(demo_models / "face-detection", True, name="face-detection").statuses()
    assert not status.available
    assert (
        "model 'face-detection', which cannot batch: output 'detection_out' has shape [1,1,200,7], "
        "whose dim 0 is not the batch"
    ) in status.error_message


@pytest.mark.parametrize("name, shape", [("text-recognition", (1, 3, 48, 320)), ("face-landmarks", (1, 192, 192, 3))])
def test_real_models_merged_equal_alone(demo_models, name, shape):
    kwargs = {"shape": "(" + ",".join(map(str, shape)) + ")"} if name == "text-recognition" else {}
    batched, plain = servable(demo_models / name, True, **kwargs), servable(demo_models / name, False, **kwargs)
    (input_name,) = (info.name for info in plain.signature(None)[1])
    rng = np.random.default_rng(0)
    requests = [InferRequest("m", None, {input_name: rng.uniform(0, 1, shape).astype(np.float32)}) for _ in range(4)]
    responses, sizes = run_batch(batched, requests)
    assert sizes == {4: 1}
    for request, response in zip(requests, responses, strict=True):
        expected = run_alone(plain, request)
        for output in expected.outputs:
            np.testing.assert_allclose(response.outputs[output], expected.outputs[output], rtol=1e-5, atol=1e-6)
