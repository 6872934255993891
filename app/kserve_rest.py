"""KServe v2 REST wire format: JSON tensors and the binary tensor extension.

A request body is a JSON header, optionally followed by raw tensor bytes; the
``Inference-Header-Content-Length`` header says where the JSON ends, and each binary input
declares its size in ``parameters.binary_data_size`` (optional when there is a single input,
as OVMS allows). BYTES elements are 4-byte little-endian lengths each followed by the bytes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from app.errors import InvalidContentSize, JsonInvalid, MalformedRequest, ModelVersionNotFound
from app.inference import InferRequest, InferResponse, RequestedOutput
from app.tensors import check_range, checked_shape, datatype_of, decimal, dtype_of, from_raw, to_raw

HEADER_LENGTH = "inference-header-content-length"


def parse_version(text: str | None) -> int | None:
    """A URL's version segment: digits only, as OVMS's route regex demands."""
    if text is None:
        return None
    version = decimal(text)
    if version is None or version < 1:
        raise ModelVersionNotFound(f"version '{text}' is not a positive integer")
    return version


def decode_request(model_name: str, version: int | None, body: bytes, header_length: int | None) -> InferRequest:
    if header_length is not None and not 0 <= header_length <= len(body):
        raise InvalidContentSize(
            f"Inference-Header-Content-Length is {header_length}, but the body has {len(body)} bytes"
        )
    json_end = len(body) if header_length is None else header_length
    header = _load_json(body[:json_end])
    binary = memoryview(body)[json_end:]
    inputs_json = _field(header, "inputs", list)
    if not inputs_json:
        raise MalformedRequest("'inputs' is empty; expected at least one input tensor")
    inputs, offset = {}, 0
    for index, spec in enumerate(inputs_json):
        name, array, used = _decode_input(spec, index, binary, offset, single=len(inputs_json) == 1)
        if name in inputs:
            raise MalformedRequest(f"input '{name}' is given twice")
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise InvalidContentSize(f"{len(binary) - offset} bytes of binary data follow the inputs and belong to none")
    parameters = _field(header, "parameters", dict, default={})
    return InferRequest(
        model_name=model_name,
        version=version,
        inputs=inputs,
        outputs=[_decode_output(o, i) for i, o in enumerate(_field(header, "outputs", list, default=[]))],
        id=_field(header, "id", str, default=None),
        binary_outputs=bool(parameters.get("binary_data_output", False)),
    )


def _load_json(raw: bytes | memoryview) -> dict:
    try:
        header = orjson.loads(raw)  # strict JSON: no NaN, no lone surrogates, nesting at most 1024 deep
    except orjson.JSONDecodeError as exc:
        raise JsonInvalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedRequest(f"request body is a JSON {type(header).__name__}; expected an object with 'inputs'")
    return header


def _field(obj: dict, key: str, kind: type, *, where: str = "request", default: Any = ...) -> Any:
    if key not in obj:
        if default is ...:
            raise MalformedRequest(f"{where} has no '{key}'")
        return default
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise MalformedRequest(f"{where} '{key}' is a {type(value).__name__}; expected a {kind.__name__}")
    return value


def _decode_input(spec: Any, index: int, binary: memoryview, offset: int, single: bool) -> tuple[str, np.ndarray, int]:
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise MalformedRequest(f"{where} is not an object")
    name = _field(spec, "name", str, where=where)
    where = f"input '{name}'"
    shape = checked_shape(_field(spec, "shape", list, where=where), where)
    datatype = _field(spec, "datatype", str, where=where)
    dtype = dtype_of(datatype)
    parameters = _field(spec, "parameters", dict, where=where, default={})
    size = parameters.get("binary_data_size")
    if size is None and "data" not in spec and single and len(binary) > offset:
        size = len(binary) - offset  # OVMS: binary_data_size is optional for a single input
    if size is not None:
        if not isinstance(size, int) or size < 0:
            raise MalformedRequest(f"{where} binary_data_size is {size!r}; expected a non-negative integer")
        if offset + size > len(binary):
            raise InvalidContentSize(
                f"{where} declares binary_data_size {size}, but only {len(binary) - offset} bytes remain in the body"
            )
        chunk = binary[offset : offset + size]
        return name, from_raw(chunk, shape, datatype, name), size
    if "data" not in spec:
        raise MalformedRequest(f"{where} has neither 'data' nor parameters.binary_data_size")
    return name, _from_json(spec["data"], shape, datatype, dtype, name), 0


def _from_json(data: Any, shape: tuple[int, ...], datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_from_json(data, shape, count, name)
    values = _json_values(data)
    if values.size != count:
        raise InvalidContentSize(
            f"input '{name}': {values.size} values given; expected {count} for shape {list(shape)}"
        )
    return _typed(values.reshape(-1), datatype, dtype, name).reshape(shape)


def _json_values(data: Any) -> np.ndarray:
    """The parsed values as numpy reads them, in C, with the dtype they imply (int64, uint64,
    float64, bool, str, or object for null and objects): the datatype is checked after. orjson
    reads an integer beyond 64 bits as a float."""
    try:
        return np.asarray(data)
    except ValueError:  # ragged nesting: the values in order, whatever the nesting
        return np.asarray(_flatten(data))


# JSON values each datatype takes, by the numpy kind they parse to: a number for a numeric tensor
# (a float only if it is integral, for an integer one), true/false for BOOL. Anything else is
# refused rather than coerced: numpy would read null as NaN and "1.5" or true as numbers.
_KINDS = {"b": "BOOL", "i": "integer", "u": "integer", "f": "float"}
_WHAT = {
    "b": "true/false",
    "i": "integers",
    "u": "integers",
    "f": "numbers",
    "U": "strings",
    "O": "null or objects",
}


def _typed(values: np.ndarray, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    if values.size == 0:
        return np.empty(0, dtype)
    kind, wanted = values.dtype.kind, _KINDS[dtype.kind]
    takes = "b" if wanted == "BOOL" else "iuf"
    if kind not in takes:
        expected = "true or false" if wanted == "BOOL" else "numbers"
        raise MalformedRequest(f"input '{name}': {datatype} data holds {_WHAT.get(kind, kind)}; expected {expected}")
    if wanted == "integer":
        return _integers(values, datatype, dtype, name)
    with np.errstate(over="ignore"):  # beyond the float type's range is +-inf, as IEEE conversion gives
        return values.astype(dtype)


def _integers(values: np.ndarray, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    if values.dtype.kind == "f":
        fractional = values[~np.isfinite(values) | (values != np.round(values))]
        if fractional.size:
            raise MalformedRequest(f"input '{name}': {datatype} value {fractional[0]} is not an integer")
    check_range(values, datatype, name)
    return values.astype(dtype)


def _bytes_from_json(data: Any, shape: tuple[int, ...], count: int, name: str) -> np.ndarray:
    flat = _flatten(data)
    if len(flat) != count:
        raise InvalidContentSize(f"input '{name}': {len(flat)} values given; expected {count} for shape {list(shape)}")
    strange = [v for v in flat if not isinstance(v, str)]
    if strange:
        raise MalformedRequest(f"input '{name}': BYTES element {strange[0]!r} is not a string")
    array = np.empty(count, dtype=object)
    array[:] = [v.encode() for v in flat]
    return array.reshape(shape)


def _flatten(data: Any) -> list:
    """The values of nested lists in order. A loop, not recursion: a client picks the depth."""
    if not isinstance(data, list):
        return [data]
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _decode_output(spec: Any, index: int) -> RequestedOutput:
    where = f"outputs[{index}]"
    if not isinstance(spec, dict):
        raise MalformedRequest(f"{where} is not an object")
    parameters = _field(spec, "parameters", dict, where=where, default={})
    binary = parameters.get("binary_data")
    return RequestedOutput(_field(spec, "name", str, where=where), None if binary is None else bool(binary))


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers; binary outputs follow the JSON header."""
    binary_flags = {o.name: o.binary for o in request.outputs}
    outputs, chunks = [], []
    for name, array in response.outputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        binary = binary_flags.get(name)
        if binary if binary is not None else request.binary_outputs:
            raw = to_raw(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(array, datatype)
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": response.model_name, "model_version": str(response.model_version)}
    if response.id is not None:
        body["id"] = response.id
    body["outputs"] = outputs
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }


def _json_data(array: np.ndarray, datatype: str) -> np.ndarray | list:
    """What goes in an output's ``data``: orjson writes numeric arrays itself, without Python lists."""
    if datatype == "BYTES":
        return [bytes(v).decode("utf-8", "replace") if not isinstance(v, str) else v for v in array.reshape(-1)]
    return np.ascontiguousarray(array.reshape(-1))
