"""Built-in ppocr_text_crops: text-line crops for PP-OCRv4 recognition (the ``horizontal_ocr`` role).

Python with OpenCV: contours, minAreaRect and perspective warps are OpenCV calls.

Inputs: ``image`` FP32 [1,3,H,W] (or NHWC), BGR 0..255, any size; ``probability_map`` FP32
[1,1,h,w], the PP-OCRv4 detector's ``sigmoid_0.tmp_0`` for that image resized to h x w.
Outputs, one entry per text box, top to bottom then left to right:
- ``text_images`` FP32 [N,1,3,text_height,W]: each box warped upright, resized to text_height
  keeping its aspect, normalised as (x/255 - 0.5)/0.5 and zero-padded on the right to the widest
  crop (W is a multiple of 8, at most max_text_width);
- ``text_coordinates`` I32 [N,1,4]: x, y, width, height of the box in image pixels;
- ``confidence_levels`` FP32 [N,1,1]: the box score (mean probability inside the box).

Params (DB post-processing as rapidocr sets it): ``binary_threshold`` 0.3, ``box_threshold``
0.5, ``unclip_ratio`` 1.6, ``min_box_size`` 3, ``dilate`` true (2x2; PaddleOCR's own predict_det
uses false, which scores thin lines higher), ``max_output_batch`` 100, ``text_height`` 48,
``max_text_width`` 2048, ``image_layout`` NCHW.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from nodes import Node, NodeExecutionFailed, TensorInfo, Tensors
from nodes.builtin.images import to_hwc
from nodes.builtin.params import boolean, layout, param


def _unit(v: float) -> bool:
    return 0 <= v <= 1


def _positive(v: float) -> bool:
    return v > 0


class TextCrops(Node):
    thread_safe = True  # no state changes after initialize

    def initialize(self, params: dict[str, str]) -> None:
        n = self.node_name
        self.binary_threshold = param(n, params, "binary_threshold", float, 0.3, _unit, "a number in 0-1")
        self.box_threshold = param(n, params, "box_threshold", float, 0.5, _unit, "a number in 0-1")
        self.unclip_ratio = param(n, params, "unclip_ratio", float, 1.6, _positive, "a positive number")
        self.min_box_size = param(n, params, "min_box_size", float, 3.0, _positive, "a positive number")
        self.dilate = boolean(n, params, "dilate", True)
        self.max_batch = param(n, params, "max_output_batch", int, 100, _positive, "a positive integer")
        self.text_height = param(n, params, "text_height", int, 48, _positive, "a positive integer")
        self.max_width = param(n, params, "max_text_width", int, 2048, lambda v: v >= 8, "an integer >= 8")
        self.nchw = layout(n, params, "image_layout")

    def inputs_info(self) -> list[TensorInfo]:
        image = (1, 3, -1, -1) if self.nchw else (1, -1, -1, 3)
        return [TensorInfo("image", "FP32", image), TensorInfo("probability_map", "FP32", (1, 1, -1, -1))]

    def outputs_info(self) -> list[TensorInfo]:
        return [
            TensorInfo("text_images", "FP32", (-1, 1, 3, self.text_height, -1)),
            TensorInfo("text_coordinates", "INT32", (-1, 1, 4)),
            TensorInfo("confidence_levels", "FP32", (-1, 1, 1)),
        ]

    def execute(self, inputs: Tensors) -> Tensors:
        image = to_hwc(self.node_name, inputs["image"], self.nchw)
        probability = inputs["probability_map"]
        if probability.ndim != 4 or probability.shape[:2] != (1, 1):
            raise NodeExecutionFailed(
                self.node_name, f"probability_map must be [1,1,h,w], got {list(probability.shape)}"
            )
        boxes = self.boxes(np.asarray(probability[0, 0], np.float32), image.shape[1], image.shape[0])
        return self.crops(image, boxes)

    # --- DB post-processing: probability map -> scored quadrilaterals in image pixels --------

    def boxes(self, probability: np.ndarray, width: int, height: int) -> list[tuple[np.ndarray, float]]:
        mask: np.ndarray = (probability > self.binary_threshold).astype(np.uint8)
        if self.dilate:
            mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        scale = np.array([width / probability.shape[1], height / probability.shape[0]], np.float32)
        found = []
        for contour in contours:
            rect = cv2.minAreaRect(contour)
            if min(rect[1]) < self.min_box_size:
                continue
            score = self.box_score(probability, cv2.boxPoints(rect))
            if score < self.box_threshold:
                continue
            grown = self.unclip(rect)
            if min(grown[1]) < self.min_box_size + 2:
                continue
            points = order_points(cv2.boxPoints(grown)) * scale
            points = np.clip(points, 0, [width - 1, height - 1])
            found.append((points.astype(np.float32), score))
        return sort_reading_order(found)[: self.max_batch]

    @staticmethod
    def box_score(probability: np.ndarray, points: np.ndarray) -> float:
        """Mean probability inside the box, over the box's bounding rectangle (PaddleOCR's fast score)."""
        h, w = probability.shape
        x0, y0 = np.clip(np.floor(points.min(0)).astype(int), 0, [w - 1, h - 1])
        x1, y1 = np.clip(np.ceil(points.max(0)).astype(int), 0, [w - 1, h - 1])
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
        cv2.fillPoly(mask, [(points - [x0, y0]).astype(np.int32)], 1)  # truncated, as PaddleOCR
        return float(cv2.mean(probability[y0 : y1 + 1, x0 : x1 + 1], mask)[0])

    def unclip(self, rect: tuple) -> tuple:
        """Grow the rectangle by d = area * ratio / perimeter on every side, as PaddleOCR's unclip does."""
        (cx, cy), (w, h), angle = rect
        d = w * h * self.unclip_ratio / (2 * (w + h))
        return (cx, cy), (w + 2 * d, h + 2 * d), angle

    # --- crops ---------------------------------------------------------------------------------

    def crops(self, image: np.ndarray, boxes: list[tuple[np.ndarray, float]]) -> Tensors:
        lines = [self.warp(image, points) for points, _ in boxes]
        width = min(self.max_width, max([8, *(line.shape[1] for line in lines)]))
        width = min(self.max_width, -(-width // 8) * 8)
        batch = np.zeros((len(lines), 1, 3, self.text_height, width), np.float32)
        for index, line in enumerate(lines):
            line = line[:, :width]
            batch[index, 0, :, :, : line.shape[1]] = (line / 255.0 - 0.5).transpose(2, 0, 1) / 0.5
        coordinates = np.array([cv2.boundingRect(points.astype(np.int32)) for points, _ in boxes], np.int32).reshape(
            -1, 1, 4
        )
        scores = np.array([score for _, score in boxes], np.float32).reshape(-1, 1, 1)
        return {"text_images": batch, "text_coordinates": coordinates, "confidence_levels": scores}

    def warp(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The box warped upright (PaddleOCR's get_rotate_crop_image), resized to text_height."""
        w = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
        h = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
        w, h = max(w, 1), max(h, 1)
        target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        crop = cv2.warpPerspective(
            image,
            cv2.getPerspectiveTransform(points, target),
            (w, h),
            borderMode=cv2.BORDER_REPLICATE,
            flags=cv2.INTER_CUBIC,
        )
        if h / w >= 1.5:  # a vertical box: read it turned left, as PaddleOCR does
            crop, (w, h) = np.rot90(crop), (h, w)
        resized_w = min(self.max_width, max(1, math.ceil(self.text_height * w / h)))
        resized = cv2.resize(np.ascontiguousarray(crop), (resized_w, self.text_height))
        return np.clip(resized, 0, 255)  # cubic warps overshoot; PaddleOCR's uint8 images clip the same way


def order_points(points: np.ndarray) -> np.ndarray:
    """Four corners as top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0])]
    left, right = by_x[:2], by_x[2:]
    top_left, bottom_left = left[np.argsort(left[:, 1])]
    top_right, bottom_right = right[np.argsort(right[:, 1])]
    return np.array([top_left, top_right, bottom_right, bottom_left], np.float32)


def sort_reading_order(boxes: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
    """Top to bottom, and left to right within a line (tops less than 10 px apart), as PaddleOCR."""
    boxes = sorted(boxes, key=lambda b: (b[0][0][1], b[0][0][0]))
    for i in range(len(boxes) - 1):
        for j in range(i, -1, -1):
            a, b = boxes[j][0][0], boxes[j + 1][0][0]
            if abs(b[1] - a[1]) < 10 and b[0] < a[0]:
                boxes[j], boxes[j + 1] = boxes[j + 1], boxes[j]
            else:
                break
    return boxes
