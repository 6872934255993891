"""Built-in face_blur: blur the detected boxes of an image, OVMS's face_blur contract.

Python with OpenCV because ``cv2.GaussianBlur`` is exactly what OVMS's C++ node calls; a C
re-implementation would only approximate it.

Inputs: ``image`` FP32 [1,3,H,W] (or NHWC) BGR, ``detection`` FP32 [1,1,N,7] (rows stop at the
first image_id -1). Output: ``image`` FP32, blurred where a row's confidence >= threshold, resized to
the target size if given.

Params: ``gaussian_blur_kernel_size`` (required, positive and odd), ``confidence_threshold``
(0.5), ``original_image_layout`` / ``target_image_layout`` (NCHW), ``target_image_width`` /
``target_image_height`` (default: the input size), ``original_image_width`` / ``_height`` (checked
against the input when given).
"""

from __future__ import annotations

import cv2

from nodes import Node, NodeExecutionFailed, TensorInfo, Tensors
from nodes.builtin.images import detections, from_hwc, pixel_box, to_hwc
from nodes.builtin.params import layout, param


def _positive(v: int) -> bool:
    return v > 0


class FaceBlur(Node):
    thread_safe = True  # no state changes after initialize

    def initialize(self, params: dict[str, str]) -> None:
        n = self.node_name
        self.kernel = param(
            n,
            params,
            "gaussian_blur_kernel_size",
            int,
            check=lambda k: k > 0 and k % 2 == 1,
            expected="a positive odd integer",
        )
        self.threshold = param(n, params, "confidence_threshold", float, 0.5, lambda t: 0 <= t <= 1, "a number in 0-1")
        self.nchw_in = layout(n, params, "original_image_layout")
        self.nchw_out = layout(n, params, "target_image_layout")
        self.width = param(n, params, "target_image_width", int, -1, _positive, "a positive integer")
        self.height = param(n, params, "target_image_height", int, -1, _positive, "a positive integer")
        self.orig_width = param(n, params, "original_image_width", int, -1, _positive, "a positive integer")
        self.orig_height = param(n, params, "original_image_height", int, -1, _positive, "a positive integer")

    def inputs_info(self) -> list[TensorInfo]:
        h, w = self.orig_height, self.orig_width
        image = (1, 3, h, w) if self.nchw_in else (1, h, w, 3)
        return [TensorInfo("image", "FP32", image), TensorInfo("detection", "FP32", (1, 1, -1, 7))]

    def outputs_info(self) -> list[TensorInfo]:
        h, w = self.height, self.width
        return [TensorInfo("image", "FP32", (1, 3, h, w) if self.nchw_out else (1, h, w, 3))]

    def execute(self, inputs: Tensors) -> Tensors:
        image = to_hwc(self.node_name, inputs["image"], self.nchw_in).copy()
        height, width = image.shape[:2]
        if (self.orig_width, self.orig_height) != (-1, -1) and (width, height) != (self.orig_width, self.orig_height):
            raise NodeExecutionFailed(
                self.node_name, f"image is {width}x{height}, params say {self.orig_width}x{self.orig_height}"
            )
        for row in detections(self.node_name, inputs["detection"]):
            box = pixel_box(row, width, height)
            if row[0] != 0 or row[2] < self.threshold or box is None:
                continue
            x0, y0, x1, y1 = box
            image[y0:y1, x0:x1] = cv2.GaussianBlur(image[y0:y1, x0:x1], (self.kernel, self.kernel), 0)
        if self.width > 0 or self.height > 0:
            size = (self.width if self.width > 0 else width, self.height if self.height > 0 else height)
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return {"image": from_hwc(image, self.nchw_out)}
