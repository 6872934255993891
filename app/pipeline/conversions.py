"""Where a pipeline's request and response meet BYTES: strings and encoded images, handled as OVMS's
tensorinfo.cpp handles them.

- A BYTES tensor sent to a 2-D UINT8 input becomes ``[n, maxlen+1]`` UINT8, each string
  zero-padded (``["String_123", "", "zebra"]`` -> ``[3, 11]``).
- A 2-D UINT8 output whose response name ends in ``_string`` goes back as BYTES, one element per
  row with its trailing zeros stripped.
- BYTES holding JPEG or PNG sent to a 4-D input (5-D with an entry demultiplexer, one image per
  shard) are decoded by OpenCV, as OVMS does: BGR (or grey for 1 channel), resized when the
  input's height and width are fixed and differ, cast to the input's datatype. The layout is
  NHWC, as in OVMS, unless the input's shape says NCHW (dim 1 is 1 or 3 and the last dim is
  not), where the image is transposed to CHW.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from app.errors import InvalidContentSize, InvalidShape
from app.tensors import DTYPES, TensorInfo

STRING_SUFFIX = "_string"


def strings_to_u8(array: np.ndarray) -> np.ndarray:
    """BYTES ``[n]`` -> UINT8 ``[n, maxlen+1]``, zero-padded (so every row ends with a 0)."""
    items = [_as_bytes(item) for item in array.reshape(-1)]
    width = max((len(item) for item in items), default=0) + 1
    out = np.zeros((len(items), width), np.uint8)
    for row, item in enumerate(items):
        out[row, : len(item)] = np.frombuffer(item, np.uint8)
    return out


def u8_to_strings(array: np.ndarray) -> np.ndarray:
    """UINT8 ``[n, width]`` -> BYTES ``[n]``, each row without its trailing zeros."""
    out = np.empty(array.shape[0], dtype=object)
    out[:] = [row.tobytes().rstrip(b"\0") for row in array]
    return out


def is_string_output(name: str, array: np.ndarray) -> bool:
    return name.endswith(STRING_SUFFIX) and array.dtype == np.uint8 and array.ndim == 2


def decode_images(array: np.ndarray, info: TensorInfo) -> np.ndarray:
    """BYTES of encoded images -> one tensor shaped for ``info`` (rank 4, or 5 with one image per shard)."""
    images = [_decode(info, index, _as_bytes(item)) for index, item in enumerate(array.reshape(-1))]
    if not images:
        raise InvalidShape(f"input '{info.name}': no image in the BYTES tensor; expected at least one JPEG or PNG")
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise InvalidShape(f"input '{info.name}': images of different sizes {sorted(shapes)}; expected one size")
    batch = np.stack(images)
    return batch[:, np.newaxis] if len(info.shape) == 5 else batch


def _decode(info: TensorInfo, index: int, data: bytes) -> np.ndarray:
    channels_first = _is_nchw(info.shape)
    height, width, channels = _hwc(info.shape, channels_first)
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag) if data else None
    except cv2.error:  # OpenCV refuses an image above its pixel cap before it allocates it
        raise InvalidContentSize(
            f"input '{info.name}': element {index} is an image of more than {max_image_pixels()} pixels; "
            "expected a smaller one (OPENCV_IO_MAX_IMAGE_PIXELS)"
        ) from None
    if image is None:
        raise InvalidContentSize(f"input '{info.name}': element {index} is not a JPEG or PNG image OpenCV can decode")
    if height > 0 and width > 0 and image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height))  # OVMS resizes to a fixed input size
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    image = image.astype(DTYPES[info.datatype], copy=False)
    return np.ascontiguousarray(image.transpose(2, 0, 1)) if channels_first else image


def max_image_pixels() -> int:
    """OpenCV's cap on the pixels of one decoded image (app/serve_flags.py sets it)."""
    return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 2**30))


def _is_nchw(shape: tuple) -> bool:
    dims = shape[-3:]  # C,H,W or H,W,C: the image part, after the batch (and shard) dims
    return dims[0] in (1, 3) and dims[2] not in (1, 3)


def _hwc(shape: tuple, channels_first: bool) -> tuple[int, int, int]:
    c, h, w = shape[-3:] if channels_first else (shape[-1], *shape[-3:-1])
    fixed = [d if isinstance(d, int) else -1 for d in (h, w, c)]
    return fixed[0], fixed[1], fixed[2]


def wants_images(info: TensorInfo, entry_demultiplexer: bool) -> bool:
    """Whether BYTES sent to this input are encoded images: a 4-D input, 5-D behind an entry demultiplexer."""
    return len(info.shape) == (5 if entry_demultiplexer else 4) and info.datatype != "BYTES"


def wants_strings(info: TensorInfo) -> bool:
    return info.datatype == "UINT8" and len(info.shape) == 2


def _as_bytes(item: str | bytes) -> bytes:
    """One element of a BYTES tensor (an object array holds bytes, or str when built from text)."""
    return item.encode() if isinstance(item, str) else bytes(item)
