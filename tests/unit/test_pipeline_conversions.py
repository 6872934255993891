"""Strings and images at a pipeline's edges (OVMS tensorinfo.cpp and the binary extension)."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from app.errors import InvalidContentSize, http_status
from app.pipeline import run, validate
from app.pipeline.conversions import decode_images, strings_to_u8, u8_to_strings
from app.tensors import TensorInfo
from tests.unit._pipeline_support import custom, model, pipeline

WORDS = np.array([b"String_123", b"", b"zebra"], dtype=object)


def test_strings_become_zero_padded_u8_rows_and_come_back():
    rows = strings_to_u8(WORDS)
    assert rows.shape == (3, 11) and rows.dtype == np.uint8
    assert rows[0].tobytes() == b"String_123\0" and not rows[1].any() and rows[2].tobytes() == b"zebra" + b"\0" * 6
    assert list(u8_to_strings(rows)) == list(WORDS)


def echo_pipeline():
    return pipeline(
        "echo",
        ["text"],
        [custom("echo", "Echo", {"text": ("request", "text")}, {"text": "t"})],
        {"texts_string": ("echo", "t"), "texts_raw": ("echo", "t")},
    )


def test_a_string_round_trip_through_a_pipeline(pipeline_catalog):
    seen = []

    async def call(node, inputs):
        seen.append(inputs["text"])
        return await pipeline_catalog.call(node, inputs)

    definition = validate(echo_pipeline(), pipeline_catalog)
    assert definition.metadata()["outputs"][0] == {"name": "texts_string", "datatype": "BYTES", "shape": [-1]}
    out = asyncio.run(run(definition, {"text": WORDS}, call))
    assert seen[0].shape == (3, 11) and seen[0].dtype == np.uint8  # the node got [n, maxlen+1] U8
    assert out["texts_string"].dtype == object and list(out["texts_string"]) == list(WORDS)
    assert out["texts_raw"].shape == (3, 11)  # no _string suffix: stays U8


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


IMAGE = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)  # H=4, W=6, BGR


def test_png_bytes_to_a_4d_input_are_decoded_nhwc(pipeline_catalog):
    # dynamic_image: input_numbers FP32 with 4 dynamic dims -> NHWC; it adds 8.
    config = pipeline(
        "image",
        ["image"],
        [custom("plus8", "dynamic_image", {"input_numbers": ("request", "image")}, {"output_numbers": "o"})],
        {"out": ("plus8", "o")},
    )
    images = np.array([encode(IMAGE, ".png")], dtype=object)
    out = asyncio.run(run(validate(config, pipeline_catalog), {"image": images}, pipeline_catalog.call))
    np.testing.assert_array_equal(out["out"], IMAGE[np.newaxis].astype(np.float32) + 8)


def test_jpeg_bytes_to_an_nchw_model_input_are_decoded_and_transposed(pipeline_catalog):
    config = pipeline(
        "nchw", ["image"], [model("m", "dummy_nchw", {"b": ("request", "image")}, {"a": "y"})], {"out": ("m", "y")}
    )
    flat = np.full((4, 6, 3), (10, 100, 200), np.uint8)  # one colour survives JPEG almost exactly
    images = np.array([encode(flat, ".jpg")], dtype=object)
    out = asyncio.run(run(validate(config, pipeline_catalog), {"image": images}, pipeline_catalog.call))
    assert out["out"].shape == (1, 3, 4, 6)
    np.testing.assert_allclose(out["out"][0, :, 0, 0], [11, 101, 201], atol=3)  # B, G, R planes, plus 1


def test_images_are_resized_to_a_fixed_input_and_stacked_per_shard():
    info = TensorInfo("image", "UINT8", (2, 1, 8, 12, 3))  # behind an entry demultiplexer of 2
    batch = decode_images(np.array([encode(IMAGE, ".png")] * 2, dtype=object), info)
    assert batch.shape == (2, 1, 8, 12, 3) and batch.dtype == np.uint8


def test_bytes_that_are_no_image_are_a_bad_request():
    with pytest.raises(InvalidContentSize) as error:
        decode_images(np.array([b"not an image"], dtype=object), TensorInfo("image", "FP32", (1, -1, -1, 3)))
    assert http_status(error.value) == 400 and "'image'" in error.value.message


def test_a_jpeg_whose_header_claims_a_huge_image_is_refused_before_it_is_decoded():
    """A few hundred bytes claiming 30000 x 30000 pixels: without the cap OpenCV allocates 2.7 GB."""
    import os

    assert int(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"]) == 2**26  # set by the venv before cv2 was imported
    jpeg = bytearray(encode(np.zeros((8, 8, 3), np.uint8), ".jpg"))
    frame = jpeg.find(b"\xff\xc0")  # baseline start-of-frame: length, precision, then height and width
    jpeg[frame + 5 : frame + 9] = (30000).to_bytes(2, "big") * 2
    with pytest.raises(InvalidContentSize, match="more than 67108864 pixels") as error:
        decode_images(np.array([bytes(jpeg)], dtype=object), TensorInfo("image", "FP32", (1, -1, -1, 3)))
    assert http_status(error.value) == 400 and "'image'" in error.value.message
