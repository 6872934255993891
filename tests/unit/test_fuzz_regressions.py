"""Cases tests/integration/test_fuzz.py found, each driven directly at the code that answered it
wrongly, so that it stays fixed without a Ray cluster. Each names the seed and case that found it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from app.config import parse_config
from app.errors import InvalidShape, ServerFault, http_status
from app.inference import InferRequest
from app.model import ModelServable
from app.openvino_model import inference_error
from nodes.errors import NodeInputInvalid
from nodes.loading import load_node_class


def builtin(name: str, params: dict[str, str]):
    node = load_node_class(f"builtin:{name}", Path("."))()
    node.initialize(params)
    return node


# RAYVINO_FUZZ_SEED=23, case 9207: {"inputs": [{"name": "image", "shape": [1, 3, 0, 3], "datatype": "FP32",
# "data": []}]} to the ocr pipeline answered 500: ppocr_det_preprocess handed OpenCV's resize an empty image
# (and [1,3,0,0] divided by zero). An image without pixels is the client's error: 400, naming the shape.
@pytest.mark.parametrize("shape", [(1, 3, 0, 3), (1, 3, 5, 0), (1, 3, 0, 0)])
@pytest.mark.parametrize(
    "name, params, extra",
    [
        ("ppocr_det_preprocess", {}, {}),
        ("ppocr_text_crops", {}, {"probability_map": np.zeros((1, 1, 32, 32), np.float32)}),
        ("face_blur", {"gaussian_blur_kernel_size": "5"}, {"detection": np.zeros((1, 1, 200, 7), np.float32)}),
    ],
)
def test_an_image_without_pixels_is_a_bad_request_not_a_node_fault(name, params, extra, shape):
    node = builtin(name, params)
    with pytest.raises(NodeInputInvalid, match=r"node '.*' input 'image': expected \[1,C,H,W\] with H and W"):
        node.run({"image": np.zeros(shape, np.float32), **extra})
    assert http_status(NodeInputInvalid("n", "image", "x", "y")) == 400


def test_an_image_of_one_pixel_still_runs():
    out = builtin("ppocr_det_preprocess", {}).run({"image": np.zeros((1, 3, 1, 1), np.float32)})
    assert out["image"].shape == (1, 3, 32, 32)


# RAYVINO_FUZZ_SEED=99, case 2858: {"inputs": [{"name": "x", "shape": [48, 3, 48, 0], "datatype": "FP32",
# "data": []}]} to text-detection answered 500 "Inference failed": the CPU plugin's convolution refuses an
# empty image with an error that is not from shape inference. A zero dim is the request's fault: 400.
CPU_EMPTY_IMAGE = (
    "Exception from src/inference/src/cpp/infer_request.cpp:224:\n"
    "Exception from src/plugins/intel_cpu/src/node.cpp:794:\n"
    "[CPU] Convolution node with name 'Multiply_10375' Check 'dim_stride.has_value()' failed at "
    "src/plugins/intel_cpu/src/memory_desc/cpu_blocked_memory_desc.cpp:164:\n"
    "CpuBlockedMemoryDesc::getCurrentMemSizeImp overflow while multiplying dim and stride\n\n\n"
)


def test_a_failed_inference_of_an_empty_input_is_the_requests_fault():
    inputs = {"x": np.zeros((48, 3, 48, 0), np.float32)}
    error = inference_error(1, inputs, RuntimeError(CPU_EMPTY_IMAGE))
    assert isinstance(error, InvalidShape) and http_status(error) == 400
    assert error.message == (
        "Invalid input shape - version 1: the model cannot run inputs of shape x [48, 3, 48, 0]: "
        "CpuBlockedMemoryDesc::getCurrentMemSizeImp overflow while multiplying dim and stride"
    )
    # The same failure with data in every input stays the server's.
    assert isinstance(inference_error(1, {"x": np.zeros((1, 3, 8, 8), np.float32)}, RuntimeError("boom")), ServerFault)


@pytest.mark.parametrize("shape", [(48, 3, 48, 0), (1, 3, 0, 64), (0, 3, 64, 64)])
def test_an_empty_image_to_the_text_detector_is_never_a_server_fault(demo_models, shape):
    # How a CPU's kernels take an empty image is theirs to decide: an answer or a 400, never a 500.
    config = parse_config(
        {"model_config_list": [{"config": {"name": "det", "base_path": str(demo_models / "text-detection")}}]}
    )
    model = ModelServable(config.models[0])
    model.load()
    try:
        asyncio.run(model.infer(InferRequest("det", None, {"x": np.zeros(shape, np.float32)})))
    except InvalidShape:
        pass
