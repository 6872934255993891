"""Built-in ppocr_det_preprocess: an image made ready for the PP-OCR text detector.

PaddleOCR's own detector pre-processing (DetResizeForTest with limit_type "max", then
NormalizeImage): the longer side is limited to ``limit_side_len`` (960), both sides are rounded
to multiples of 32 (the detector's stride), and each channel becomes (x/255 - mean) / std, with
``mean_values`` / ``std_values`` applied in the image's channel order as PaddleOCR does on its
BGR images (ImageNet's values by default).

Input ``image`` FP32 [1,3,H,W] (or NHWC with ``image_layout``) BGR 0..255, any size.
Output ``image`` FP32 [1,3,h,w], NCHW, h and w multiples of 32.
"""

from __future__ import annotations

import cv2
import numpy as np

from nodes import Node, NodeInitializeFailed, TensorInfo, Tensors
from nodes.builtin.images import from_hwc, to_hwc
from nodes.builtin.params import layout, param

STRIDE = 32


def _three_numbers(node: str, params: dict[str, str], key: str, default: str) -> np.ndarray:
    text = params.get(key, default)
    try:
        values = np.array([float(v) for v in text.replace("[", "").replace("]", "").split(",")], np.float32)
    except ValueError:
        values = np.zeros(0, np.float32)
    if values.size != 3:
        raise NodeInitializeFailed(node, f"param '{key}' = {text!r}; expected three numbers, e.g. \"{default}\"")
    return values


def detector_size(height: int, width: int, limit: int) -> tuple[int, int]:
    """The detector's input size: longer side at most ``limit``, both sides multiples of 32."""
    ratio = min(1.0, limit / max(height, width))
    return (max(STRIDE, round(height * ratio / STRIDE) * STRIDE), max(STRIDE, round(width * ratio / STRIDE) * STRIDE))


class DetPreprocess(Node):
    thread_safe = True  # no state changes after initialize

    def initialize(self, params: dict[str, str]) -> None:
        n = self.node_name
        self.limit = param(n, params, "limit_side_len", int, 960, lambda v: v >= STRIDE, f"an integer >= {STRIDE}")
        self.mean = _three_numbers(n, params, "mean_values", "0.485,0.456,0.406")
        self.std = _three_numbers(n, params, "std_values", "0.229,0.224,0.225")
        if (self.std <= 0).any():
            raise NodeInitializeFailed(n, "param 'std_values' must be positive")
        self.nchw = layout(n, params, "image_layout")

    def inputs_info(self) -> list[TensorInfo]:
        return [TensorInfo("image", "FP32", (1, 3, -1, -1) if self.nchw else (1, -1, -1, 3))]

    def outputs_info(self) -> list[TensorInfo]:
        return [TensorInfo("image", "FP32", (1, 3, -1, -1))]

    def execute(self, inputs: Tensors) -> Tensors:
        image = to_hwc(self.node_name, inputs["image"], self.nchw)
        height, width = detector_size(image.shape[0], image.shape[1], self.limit)
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        normalised = (resized / np.float32(255) - self.mean) / self.std
        return {"image": from_hwc(normalised.astype(np.float32), nchw=True)}
