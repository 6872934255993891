"""Image tensor helpers shared by the Python built-in nodes."""

from __future__ import annotations

import numpy as np

from nodes.errors import NodeExecutionFailed, NodeInputInvalid


def to_hwc(node: str, tensor: np.ndarray, nchw: bool, channels: int = 3) -> np.ndarray:
    """A [1,C,H,W] or [1,H,W,C] tensor as an H x W x C float32 image (a view when possible).

    An image without pixels (a zero height or width, which a dynamic dim allows) is the client's
    error, a 400 naming the shape: OpenCV would fail on it deep inside a resize."""
    layout = "[1,C,H,W]" if nchw else "[1,H,W,C]"
    if tensor.ndim != 4 or tensor.shape[0] != 1 or tensor.shape[1 if nchw else 3] != channels:
        raise NodeExecutionFailed(node, f"image must be {layout} with C={channels}, got shape {list(tensor.shape)}")
    image = tensor[0].transpose(1, 2, 0) if nchw else tensor[0]
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise NodeInputInvalid(node, "image", f"{layout} with H and W at least 1", f"shape {list(tensor.shape)}")
    return np.asarray(image, dtype=np.float32)


def from_hwc(image: np.ndarray, nchw: bool) -> np.ndarray:
    """An H x W x C image as a contiguous [1,C,H,W] or [1,H,W,C] tensor."""
    return np.ascontiguousarray((image.transpose(2, 0, 1) if nchw else image)[np.newaxis])


def detections(node: str, tensor: np.ndarray) -> np.ndarray:
    """Rows of a [1,1,N,7] detection tensor up to (not including) the first with image_id -1."""
    if tensor.ndim != 4 or tensor.shape[:2] != (1, 1) or tensor.shape[3] != 7:
        raise NodeExecutionFailed(node, f"detection must be [1,1,N,7], got shape {list(tensor.shape)}")
    rows = tensor[0, 0]
    ends = np.flatnonzero(rows[:, 0] == -1)
    return rows[: ends[0]] if ends.size else rows


def pixel_box(row: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The normalised box of a detection row in pixels, clipped to the image; None if empty."""
    x0, y0 = int(np.clip(row[3] * width, 0, width)), int(np.clip(row[4] * height, 0, height))
    x1, y1 = int(np.clip(row[5] * width, 0, width)), int(np.clip(row[6] * height, 0, height))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
