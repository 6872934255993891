"""Cases tests/integration/test_fuzz.py found, each driven directly at the code that answered it
wrongly, so that it stays fixed without a Ray cluster. Each names the seed and case that found it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.errors import http_status
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
