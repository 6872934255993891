"""Wire-free tensor vocabulary: KServe v2 datatypes, their numpy dtypes, tensor metadata, shapes.

Tensors travel through the core as plain ``numpy.ndarray`` values in a ``dict[str, ndarray]``;
BYTES tensors are object arrays of ``bytes``. Codecs for a protocol live beside it, not here.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from app.errors import (
    InvalidContentSize,
    InvalidNumberOfShapeDimensions,
    InvalidPrecision,
    InvalidShape,
    MalformedRequest,
)

# KServe v2 datatype -> numpy dtype. BYTES is variable length: object arrays of bytes.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
DATATYPES: dict[np.dtype, str] = {dt: name for name, dt in DTYPES.items()}

Tensors = dict[str, np.ndarray]


def dtype_of(datatype: str) -> np.dtype:
    try:
        return DTYPES[datatype]
    except KeyError:
        raise InvalidPrecision(f"unknown datatype '{datatype}'; expected one of {', '.join(DTYPES)}") from None


def datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "SUO":
        return "BYTES"
    try:
        return DATATYPES[array.dtype]
    except KeyError:
        raise InvalidPrecision(f"numpy dtype {array.dtype} has no KServe v2 datatype") from None


# What a request's shape may ask for. numpy stops at 64 dims, and a shape whose non-zero dims
# multiply past 2**40 elements describes more data than any request carries (numpy refuses to
# make it even with a zero dim elsewhere).
MAX_RANK = 64
MAX_ELEMENTS = 2**40


def checked_shape(dims: Sequence[object], where: str) -> tuple[int, ...]:
    """A request's shape as dims, or InvalidShape naming ``where`` and what a shape may be."""
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise InvalidShape(f"{where} shape {list(dims)}; expected non-negative integers")
    if len(dims) > MAX_RANK:
        raise InvalidShape(f"{where} shape has {len(dims)} dims; expected at most {MAX_RANK}")
    shape = tuple(int(d) for d in dims)  # type: ignore[call-overload]  # checked to be ints above
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise InvalidShape(f"{where} shape {list(shape)} has more than {MAX_ELEMENTS} elements")
    return shape


def check_range(values: np.ndarray, datatype: str, name: str) -> None:
    """Raise MalformedRequest unless every value fits the integer ``datatype``, naming the input."""
    limits = np.iinfo(dtype_of(datatype))
    if not values.size:
        return
    low, high = values.min(), values.max()
    if low < limits.min or high > limits.max:
        bad = low if low < limits.min else high
        raise MalformedRequest(
            f"input '{name}': value {bad} is out of range for {datatype}; expected {limits.min} to {limits.max}"
        )


def decimal(text: str) -> int | None:
    """``text`` as a number if it is ASCII digits only, else None (``str.isdigit`` also takes '³')."""
    return int(text) if text.isascii() and text.isdigit() else None


# A dimension as metadata gives it: a fixed size, -1 for dynamic, or an inclusive (low, high) range
# (high -1 for unbounded), as OpenVINO's interval dimensions allow.
Dim = int | tuple[int, int]


@dataclass(frozen=True)
class TensorInfo:
    """A servable's declared input or output: what metadata reports and requests are checked against."""

    name: str
    datatype: str
    shape: tuple[Dim, ...] = field(default_factory=tuple)

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": [metadata_dim(d) for d in self.shape]}

    def check(self, array: np.ndarray) -> None:
        """Raise InvalidPrecision or InvalidShape unless ``array`` fits this tensor."""
        got = datatype_of(array)
        if got != self.datatype:
            raise InvalidPrecision(f"input '{self.name}': expected {self.datatype}, got {got}")
        if len(self.shape) != array.ndim:
            raise InvalidNumberOfShapeDimensions(
                f"input '{self.name}': expected {len(self.shape)} dims {format_shape(self.shape)}, "
                f"got {array.ndim} {format_shape(array.shape)}"
            )
        if not shape_fits(self.shape, array.shape):
            raise InvalidShape(
                f"input '{self.name}': expected {format_shape(self.shape)}, got {format_shape(array.shape)}"
            )


def metadata_dim(dim: Dim) -> int:
    """KServe metadata has no ranges: a range is reported as dynamic (-1), as OVMS does."""
    return dim if isinstance(dim, int) else -1


def dim_fits(dim: Dim, size: int) -> bool:
    if isinstance(dim, tuple):
        low, high = dim
        return size >= low and (high < 0 or size <= high)
    return dim < 0 or dim == size


def shape_fits(expected: Sequence[Dim], actual: Sequence[int]) -> bool:
    return len(expected) == len(actual) and all(dim_fits(d, s) for d, s in zip(expected, actual, strict=True))


def format_shape(shape: Iterable[Dim]) -> str:
    def one(d: Dim) -> str:
        if isinstance(d, tuple):
            return f"{d[0]}:{d[1] if d[1] >= 0 else '?'}"
        return "?" if d < 0 else str(d)

    return "(" + ",".join(one(d) for d in shape) + ")"


# BYTES elements on the wire: each one a 4-byte little-endian length, then its bytes.
_LENGTH = struct.Struct("<I")


def pack_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def unpack_bytes(buffer: bytes | memoryview, count: int, name: str) -> np.ndarray:
    """Split a length-prefixed BYTES buffer into ``count`` elements, checking every length."""
    view = memoryview(buffer)
    items, offset = [], 0
    for index in range(count):
        if offset + 4 > len(view):
            raise InvalidContentSize(f"input '{name}': BYTES element {index} has no 4-byte length prefix")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidContentSize(
                f"input '{name}': BYTES element {index} declares {length} bytes, {len(view) - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != len(view):
        raise InvalidContentSize(f"input '{name}': {len(view) - offset} bytes left after {count} BYTES elements")
    result = np.empty(count, dtype=object)
    result[:] = items
    return result


def to_raw(array: np.ndarray) -> bytes:
    """A tensor as KServe's raw bytes (REST binary extension, gRPC raw contents): flat, row-major."""
    if datatype_of(array) == "BYTES":
        return pack_bytes(array)
    return np.ascontiguousarray(array).tobytes()


def from_raw(buffer: bytes | memoryview, shape: tuple[int, ...], datatype: str, name: str) -> np.ndarray:
    """KServe raw bytes as a tensor of ``shape``, checking the size against shape and datatype."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return unpack_bytes(buffer, count, name).reshape(shape)
    dtype = dtype_of(datatype)
    expected = count * dtype.itemsize
    if len(buffer) != expected:
        raise InvalidContentSize(
            f"input '{name}': {len(buffer)} bytes given; expected {expected} for shape {list(shape)} of {datatype}"
        )
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)
