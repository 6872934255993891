"""Built-in nodes on real images: the astronaut's face, and PP-OCRv4 on skimage's page.png."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.tensors import TensorInfo
from nodes.builtin.ctc_decode import CTCDecode, decode_strings, encode_strings
from nodes.errors import NodeExecutionFailed, NodeInitializeFailed
from nodes.loading import load_node_class
from tests.unit._nodes_support import ASTRONAUT_FACE, face_detection


def builtin(name: str, params: dict[str, str]):
    node = load_node_class(f"builtin:{name}", Path("."))()
    node.initialize(params)
    return node


def hwc(tensor: np.ndarray) -> np.ndarray:
    return tensor[0].transpose(1, 2, 0)


# --- add_one ---------------------------------------------------------------------------------


def test_add_one_defaults_and_params(builtin_libraries):
    numbers = np.arange(10, dtype=np.float32).reshape(1, 10)
    np.testing.assert_array_equal(builtin("add_one", {}).run({"input_numbers": numbers})["output_numbers"], numbers + 1)
    node = builtin("add_one", {"add_number": "5", "sub_number": "2"})
    np.testing.assert_array_equal(node.run({"input_numbers": numbers})["output_numbers"], numbers + 3)
    assert node.inputs_info() == [TensorInfo("input_numbers", "FP32", (1, 10))]
    with pytest.raises(NodeExecutionFailed):
        node.run({"input_numbers": np.ones((1, 9), np.float32)})


# --- image_transformation --------------------------------------------------------------------


def test_image_transformation_matches_opencv(builtin_libraries, astronaut_bgr):
    params = {
        "original_image_layout": "NCHW",
        "target_image_layout": "NHWC",
        "target_image_width": "320",
        "target_image_height": "200",
        "original_image_color_order": "BGR",
        "target_image_color_order": "RGB",
        "mean_values": "[123.675,116.28,103.53]",
        "scale_values": "[58.395,57.12,57.375]",
    }
    node = builtin("image_transformation", params)
    out = node.run({"image": astronaut_bgr})["image"]
    expected = cv2.resize(
        cv2.cvtColor(hwc(astronaut_bgr), cv2.COLOR_BGR2RGB), (320, 200), interpolation=cv2.INTER_LINEAR
    )
    expected = (expected - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    assert out.shape == (1, 200, 320, 3)
    np.testing.assert_allclose(out[0], expected, atol=1e-3)
    assert node.outputs_info() == [TensorInfo("image", "FP32", (1, 200, 320, 3))]


def test_image_transformation_to_gray_with_scale(builtin_libraries, astronaut_bgr):
    node = builtin(
        "image_transformation", {"original_image_layout": "NCHW", "target_image_color_order": "GRAY", "scale": "255"}
    )
    out = node.run({"image": astronaut_bgr})["image"]
    expected = cv2.cvtColor(hwc(astronaut_bgr), cv2.COLOR_BGR2GRAY) / 255
    assert out.shape == (1, 1, 512, 512)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-4)
    assert node.outputs_info() == [TensorInfo("image", "FP32", (1, 1, -1, -1))]


def test_image_transformation_requires_the_original_layout(builtin_libraries, astronaut_bgr):
    with pytest.raises(NodeExecutionFailed):
        builtin("image_transformation", {}).run({"image": astronaut_bgr})


# --- model_zoo_intel_object_detection ---------------------------------------------------------

DETECTION_PARAMS = {
    "target_image_width": "64",
    "target_image_height": "64",
    "confidence_threshold": "0.5",
    "original_image_width": "512",
    "original_image_height": "512",
}


def test_object_detection_crops_the_astronauts_face(builtin_libraries, astronaut_bgr):
    detection = face_detection()
    detection[0, 0, 2] = [0, 1, 0.99, 0, 0, 1, 1]  # after the -1 row: must be ignored
    node = builtin("model_zoo_intel_object_detection", DETECTION_PARAMS)
    out = node.run(
        {"image": astronaut_bgr, "detection": detection}, outputs=["images", "coordinates", "confidences", "label_ids"]
    )
    assert out["images"].shape == (1, 1, 3, 64, 64)
    x0, y0, x1, y1 = ASTRONAUT_FACE
    expected = cv2.resize(hwc(astronaut_bgr)[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(hwc(out["images"][0]), expected, atol=1e-2)
    np.testing.assert_allclose(out["coordinates"], [[np.array(ASTRONAUT_FACE) / 512]], atol=1e-6)
    np.testing.assert_allclose(out["confidences"], [[[0.92]]])
    assert out["label_ids"].dtype == np.int32 and out["label_ids"].tolist() == [[[1]]]


@pytest.mark.parametrize(
    "params, count",
    [
        ({"confidence_threshold": "0.95"}, 0),
        ({"filter_label_id": "2"}, 1),
        ({"max_output_batch": "2"}, 2),
    ],
)
def test_object_detection_filters(builtin_libraries, astronaut_bgr, params, count):
    detection = face_detection(rows=5)
    detection[0, 0, 1] = [0, 2, 0.6, 0.1, 0.1, 0.3, 0.3]
    detection[0, 0, 2] = [0, 1, 0.7, 0.5, 0.5, 0.9, 0.9]
    detection[0, 0, 3, 0] = -1
    node = builtin("model_zoo_intel_object_detection", {**DETECTION_PARAMS, **params, "target_image_layout": "NHWC"})
    out = node.run({"image": astronaut_bgr, "detection": detection})
    assert out["images"].shape == (count, 1, 64, 64, 3)
    assert out["label_ids"].shape == out["confidences"].shape == (count, 1, 1)
    assert out["coordinates"].shape == (count, 1, 4)


def test_object_detection_metadata(builtin_libraries):
    node = builtin("model_zoo_intel_object_detection", DETECTION_PARAMS)
    assert node.inputs_info() == [
        TensorInfo("image", "FP32", (1, 3, 512, 512)),
        TensorInfo("detection", "FP32", (1, 1, -1, 7)),
    ]
    assert [i.shape for i in node.outputs_info()] == [(-1, 1, 3, 64, 64), (-1, 1, 4), (-1, 1, 1), (-1, 1, 1)]


# --- face_blur -------------------------------------------------------------------------------


def test_face_blur_blurs_only_the_face(astronaut_bgr):
    node = builtin("face_blur", {"gaussian_blur_kernel_size": "21"})
    out = node.run({"image": astronaut_bgr, "detection": face_detection()}, outputs=["image"])["image"]
    x0, y0, x1, y1 = ASTRONAUT_FACE
    face, original = out[0, :, y0:y1, x0:x1], astronaut_bgr[0, :, y0:y1, x0:x1]
    assert np.abs(np.diff(face, axis=2)).mean() < 0.5 * np.abs(np.diff(original, axis=2)).mean()
    outside = np.ones(out.shape, bool)
    outside[..., y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[outside], astronaut_bgr[outside])


@pytest.mark.parametrize("params", [{}, {"gaussian_blur_kernel_size": "4"}, {"gaussian_blur_kernel_size": "x"}])
def test_face_blur_needs_an_odd_kernel_size(params):
    with pytest.raises(NodeInitializeFailed, match="gaussian_blur_kernel_size"):
        builtin("face_blur", params)


def test_face_blur_resizes_and_changes_layout(astronaut_bgr):
    node = builtin(
        "face_blur",
        {
            "gaussian_blur_kernel_size": "5",
            "target_image_width": "100",
            "target_image_height": "50",
            "target_image_layout": "NHWC",
        },
    )
    assert node.run({"image": astronaut_bgr, "detection": face_detection()})["image"].shape == (1, 50, 100, 3)
    assert node.outputs_info() == [TensorInfo("image", "FP32", (1, 50, 100, 3))]


# --- PP-OCRv4: text-box crops and CTC decoding -------------------------------------------------


@pytest.fixture(scope="module")
def page_ocr(ocr_models, page_bgr):
    """page.png through the real detector, ppocr_text_crops, the real recognizer and ctc_decode."""
    import openvino as ov

    core = ov.Core()
    image = hwc(page_bgr)
    height, width = (-(-s // 32) * 32 for s in image.shape[:2])  # PaddleOCR: max side 960, multiples of 32
    # PaddleOCR's predict_det normalisation (ImageNet mean/std) and DB post-processing without dilation.
    x = (cv2.resize(image, (width, height)) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    probability = core.compile_model(str(ocr_models["det"]), "CPU")(
        x.transpose(2, 0, 1)[np.newaxis].astype(np.float32)
    )[0]
    crops = builtin("ppocr_text_crops", {"dilate": "false"}).run({"image": page_bgr, "probability_map": probability})
    scores = core.compile_model(str(ocr_models["rec"]), "CPU")(crops["text_images"][:, 0])[0]
    texts = builtin("ctc_decode", {"model_path": str(ocr_models["rec"])}).run({"scores": scores[:, np.newaxis]})
    return crops, scores, texts


def test_text_crops_find_the_seven_lines_of_the_page(page_ocr):
    crops, _, _ = page_ocr
    images, coordinates = crops["text_images"], crops["text_coordinates"]
    assert images.shape[:4] == (7, 1, 3, 48) and images.shape[4] % 8 == 0
    assert images.min() >= -1 and images.max() <= 1
    assert coordinates.shape == (7, 1, 4) and coordinates.dtype == np.int32
    tops = coordinates[:, 0, 1]
    assert list(tops) == sorted(tops)  # reading order
    assert (crops["confidence_levels"] >= 0.5).all()


def test_ctc_decode_reads_the_page(page_ocr):
    _, scores, texts = page_ocr
    assert scores.shape[2] == 6625
    lines = decode_strings(texts["texts_string"])
    assert lines[0] == "Region-based segmentation"
    assert lines[1] == "Let us first determine markers of the coins and the"
    assert "zeros" in lines[6] and "coins" in lines[6]
    assert texts["texts_string"].dtype == np.uint8 and texts["texts_string"].ndim == 2
    assert (texts["confidences"] > 0.8).all()


def test_ctc_greedy_decoding_collapses_repeats_and_drops_blanks():
    node = CTCDecode(characters=["a", "b"])  # classes: blank, a, b, space
    node.initialize({})
    steps = [1, 1, 0, 1, 2, 2, 3, 0]  # a a _ a b b ' ' _  -> "aab "
    scores = np.eye(4, dtype=np.float32)[steps][np.newaxis]
    out = node.run({"scores": np.concatenate([scores, np.eye(4, dtype=np.float32)[[0] * 8][np.newaxis]])})
    assert decode_strings(out["texts_string"]) == ["aab ", ""]
    assert out["texts_string"].shape == (2, 5)
    np.testing.assert_allclose(out["confidences"], [[1.0], [0.0]])


def test_string_tensors_follow_ovms_padding():
    encoded = encode_strings(["String_123", "", "zebra"])
    assert encoded.shape == (3, 11) and encoded.dtype == np.uint8
    assert decode_strings(encoded) == ["String_123", "", "zebra"]


def test_ctc_decode_needs_a_character_list(tmp_path):
    with pytest.raises(NodeInitializeFailed, match="model_path' is required"):
        builtin("ctc_decode", {})
    with pytest.raises(NodeInitializeFailed, match="cannot read the character list"):
        builtin("ctc_decode", {"model_path": str(tmp_path / "absent.onnx")})
