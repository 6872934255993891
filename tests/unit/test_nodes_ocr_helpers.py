"""ppocr_det_preprocess and ctc_decode's coordinates pass-through."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.builtin.ctc_decode import CTCDecode, decode_strings
from nodes.builtin.det_preprocess import DetPreprocess, detector_size
from nodes.errors import NodeExecutionFailed, NodeInitializeFailed


@pytest.mark.parametrize(
    "size, limit, expected",
    [
        ((191, 384), 960, (192, 384)),  # no upscaling, only rounding to the stride
        ((1000, 3000), 960, (320, 960)),  # the longer side limited
        ((10, 10), 960, (32, 32)),  # never below one stride
    ],
)
def test_detector_size(size, limit, expected):
    assert detector_size(*size, limit) == expected


def test_det_preprocess_resizes_and_normalises_per_channel():
    node = DetPreprocess()
    node.name = "prep"
    node.initialize({"mean_values": "0.5,0.5,0.5", "std_values": "0.5,0.25,0.5"})
    image = np.full((1, 3, 50, 70), 255, np.float32)
    (out,) = node.run({"image": image}, ["image"]).values()
    assert out.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 2.0, 1.0])


def test_det_preprocess_rejects_bad_params():
    node = DetPreprocess()
    node.name = "prep"
    with pytest.raises(NodeInitializeFailed, match="std_values"):
        node.initialize({"std_values": "1,2"})


def test_ctc_decode_carries_coordinates_beside_the_texts():
    node = CTCDecode(characters=["a", "b"])
    node.name = "ctc"
    node.initialize({"with_coordinates": "true"})
    assert [i.name for i in node.inputs_info()] == ["scores", "coordinates"]
    scores = np.zeros((2, 1, 3, 4), np.float32)
    scores[0, 0, [0, 1, 2], [1, 1, 2]] = 1  # "a", "a" (collapsed), "b"
    scores[1, 0, :, 3] = 1  # " ", " ", " " collapsed to one space
    boxes = np.array([[[1, 2, 3, 4]], [[5, 6, 7, 8]]], np.int32)
    out = node.run({"scores": scores, "coordinates": boxes}, ["texts_string", "coordinates"])
    assert decode_strings(out["texts_string"]) == ["ab", " "]
    np.testing.assert_array_equal(out["coordinates"], boxes.reshape(2, 4))
    with pytest.raises(NodeExecutionFailed, match="1 coordinates for 2 texts"):
        node.run({"scores": scores, "coordinates": boxes[:1]}, ["texts_string"])
