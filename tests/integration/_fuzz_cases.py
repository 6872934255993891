"""What tests/integration/test_fuzz.py sends: Hypothesis strategies of malformed KServe v2 requests.

A ``Target`` is one model or pipeline as its metadata describes it, with a valid request of
concrete shape. Every strategy starts from that valid request and breaks one thing about it (its
``category``), then renders it for one wire (``protocol``): REST with a JSON body, REST with the
binary tensor extension, or gRPC as the raw bytes of a message (so that messages protobuf itself
would refuse to build can be sent too). Nothing here talks to a server.
"""

from __future__ import annotations

import functools
import json
import math
import struct
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import skimage.data
import skimage.io
from hypothesis import strategies as st

from app.kserve_v2 import grpc_predict_v2_pb2 as pb
from app.tensors import DTYPES, pack_bytes

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Target:
    """A servable under test: its metadata, a valid shape for each input, and shapes it cannot run."""

    name: str
    versions: tuple[str, ...]
    inputs: tuple[Tensor, ...]
    outputs: tuple[str, ...]
    images: bool = False  # a pipeline whose 4-D input also takes JPEG/PNG as BYTES
    bad_shapes: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class Rest:
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False  # sent without Content-Length


@dataclass(frozen=True)
class Grpc:
    message: bytes  # a serialized ModelInferRequest, or not


@dataclass(frozen=True)
class Case:
    target: str
    category: str
    protocol: str  # json | binary | grpc
    request: Rest | Grpc
    expect: frozenset[int] = field(default_factory=frozenset)  # statuses it must get, if known

    def __repr__(self) -> str:  # what Hypothesis prints for a failing case: short, but enough to replay
        if isinstance(self.request, Rest):
            body = self.request.body
            what = f"POST {self.request.path} headers={dict(self.request.headers)} chunked={self.request.chunked}"
        else:
            body, what = self.request.message, "gRPC ModelInfer"
        shown = body[:600] + (b"..." if len(body) > 600 else b"")
        return f"Case({self.category}/{self.protocol} -> {self.target}: {what} body[{len(body)}]={shown!r})"


# --- valid requests ---------------------------------------------------------------------------


def valid_array(tensor: Tensor) -> np.ndarray:
    """The same values every time: the canary and every mutation start from them."""
    count = math.prod(tensor.shape)
    values = (np.arange(count) % 251) / 251.0
    return values.reshape(tensor.shape).astype(DTYPES[tensor.datatype])


def image_bytes(kind: str = ".jpg", size: tuple[int, int] = (64, 48)) -> bytes:
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 255 // max(height, 1), cols * 255 // max(width, 1), (rows + cols) % 256], axis=2)
    ok, encoded = cv2.imencode(kind, image.astype(np.uint8))
    assert ok
    return encoded.tobytes()


@dataclass
class Input:
    """One input of a request being built: anything JSON can hold, so that any of it can be wrong."""

    name: Any
    datatype: Any
    shape: Any
    array: np.ndarray | None = None  # the values, unless ``json_data`` or ``raw`` says otherwise
    json_data: Any = None  # JSON ``data`` as a value (may hold RawJson)
    raw: bytes | None = None  # binary section / raw_input_contents
    parameters: Any = None

    def raw_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        assert self.array is not None
        return pack_bytes(self.array) if self.array.dtype == object else self.array.tobytes()

    def data(self) -> Any:
        if self.json_data is not None:
            return self.json_data
        assert self.array is not None
        if self.array.dtype == object:
            return [bytes(v).decode("latin-1") for v in self.array.reshape(-1)]
        return self.array.reshape(-1).tolist()


@dataclass
class Request:
    target: Target
    inputs: list[Input]
    version: str | None = None
    model: str | None = None
    outputs: Any = None
    parameters: Any = None
    top: dict = field(default_factory=dict)  # more request-level keys, or None to send ``body`` as is


def valid_request(target: Target, images: bool = False) -> Request:
    inputs = []
    for tensor in target.inputs:
        if images and target.images:
            array = np.array([image_bytes()], dtype=object)
            inputs.append(Input(tensor.name, "BYTES", [1], array))
        else:
            inputs.append(Input(tensor.name, tensor.datatype, list(tensor.shape), valid_array(tensor)))
    return Request(target, inputs)


# --- rendering ----------------------------------------------------------------------------------


class RawJson:
    """JSON text put in place as it is: tokens no encoder writes (NaN, 5000 digits, broken escapes)."""

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(value: Any) -> bytes:
    raws: list[str] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, RawJson):
            raws.append(obj.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(type(obj).__name__)

    text = json.dumps(value, default=default, allow_nan=True)
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{index}\x00"), raw, 1)
    return text.encode("utf-8", "surrogatepass")


def rest_path(request: Request) -> str:
    model = urllib.parse.quote(request.model if request.model is not None else request.target.name, safe="")
    if request.version is None:
        return f"/v2/models/{model}/infer"
    return f"/v2/models/{model}/versions/{urllib.parse.quote(request.version, safe='')}/infer"


def _header(request: Request, binary: bool) -> dict:
    inputs = []
    for item in request.inputs:
        spec: dict[str, Any] = {"name": item.name, "shape": item.shape, "datatype": item.datatype}
        parameters = item.parameters
        if binary and parameters is None:
            parameters = {"binary_data_size": len(item.raw_bytes())}
        if parameters is not None:
            spec["parameters"] = parameters
        if not binary:
            spec["data"] = item.data()
        inputs.append(spec)
    header: dict[str, Any] = {"inputs": inputs}
    if request.outputs is not None:
        header["outputs"] = request.outputs
    if request.parameters is not None:
        header["parameters"] = request.parameters
    header.update(request.top)
    return header


def render_json(request: Request, category: str, expect: frozenset[int] = frozenset()) -> Case:
    body = dumps(_header(request, binary=False))
    return Case(request.target.name, category, "json", Rest(rest_path(request), body), expect)


def render_binary(
    request: Request, category: str, expect: frozenset[int] = frozenset(), header_length: str | None = None
) -> Case:
    header = dumps(_header(request, binary=True))
    body = header + b"".join(i.raw_bytes() for i in request.inputs)
    length = str(len(header)) if header_length is None else header_length
    headers = (("Inference-Header-Content-Length", length), ("Content-Type", "application/octet-stream"))
    return Case(request.target.name, category, "binary", Rest(rest_path(request), body, headers), expect)


def grpc_message(request: Request, typed: bool = False) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(
        model_name=request.model if request.model is not None else request.target.name,
        model_version=request.version or "",
    )
    for item in request.inputs:
        tensor = message.inputs.add(name=proto_text(item.name), datatype=proto_text(item.datatype), shape=item.shape)
        if typed and item.array is not None:
            _fill_typed(tensor, item.array)
        else:
            message.raw_input_contents.append(item.raw_bytes())
    for name in request.outputs or ():
        message.outputs.add(name=proto_text(name))
    return message


def proto_text(value: Any) -> str:
    """A string protobuf can carry (UTF-8: no lone surrogates); mut_grpc_garbage sends the others."""
    return str(value).encode("utf-8", "replace").decode()


def _fill_typed(tensor: pb.ModelInferRequest.InferInputTensor, array: np.ndarray) -> None:
    flat = array.reshape(-1)
    if array.dtype == object:
        tensor.contents.bytes_contents.extend(bytes(v) for v in flat)
    elif array.dtype.kind == "f" and array.dtype.itemsize == 8:
        tensor.contents.fp64_contents.extend(flat.tolist())
    else:
        tensor.contents.fp32_contents.extend(flat.astype(np.float32).tolist())


def render_grpc(request: Request, category: str, typed: bool = False) -> Case:
    message = grpc_message(request, typed).SerializeToString()
    return Case(request.target.name, category, "grpc", Grpc(message))


def render(request: Request, protocol: str, category: str, expect: frozenset[int] = frozenset()) -> Case:
    if protocol == "json":
        return render_json(request, category, expect)
    if protocol == "binary":
        return render_binary(request, category, expect)
    return render_grpc(request, category)


# --- what can be wrong ----------------------------------------------------------------------------

ODD_NAMES = [
    "",
    " ",
    "\ud800",  # a lone surrogate: JSON text "\ud800", which no UTF-8 string can hold
    "\udfff\ud800",
    "\u0000",
    "\u202e",
    "é",
    "e\u0301",
    "\U0001f600",
    "../../etc/passwd",
    "x" * 5000,
    "%00",
    "data\n",
]

DATATYPES = [*DTYPES, "", "fp32", "FLOAT", "STRING", "FP8", "BF16", "INT128", "\u00b3", "BYTES\u0000"]

# Shapes: negative, zero, huge and overflowing dims, too many or none.
HUGE_DIMS = [0, -1, -(2**63), 2**31, 2**32, 2**40, 2**62, INT64_MAX, 65536, 10**6]


def name_values(target: Target) -> st.SearchStrategy[Any]:
    others = [t.name for t in target.inputs] + list(target.outputs)
    return st.one_of(
        st.sampled_from(ODD_NAMES + others),
        st.text(max_size=20),
    )


def json_junk() -> st.SearchStrategy[Any]:
    """Values of the wrong JSON type, for fields that want a string, a list or an object."""
    return st.one_of(
        st.sampled_from([None, True, False, 0, -1, 1.5, "", "x", [], {}, [None], {"a": 1}, 2**64]),
        st.text(max_size=8),
        st.integers(),
    )


@st.composite
def shapes(draw: st.DrawFn, rank: int, wire_ints_only: bool) -> list[Any]:
    kind = draw(st.sampled_from(["huge", "rank", "product", "odd"]))
    if kind == "rank":
        return [1] * draw(st.sampled_from([0, 1, rank - 1 if rank > 1 else 2, rank + 1, 64, 65, 1000]))
    if kind == "product":  # each dim fits int64, the product does not
        return [2**32, 2**32, *[1] * max(rank - 2, 0)]
    dims = draw(st.lists(st.sampled_from(HUGE_DIMS) | st.integers(-5, 5), min_size=rank, max_size=rank))
    if kind == "odd" and not wire_ints_only:
        index = draw(st.integers(0, max(rank - 1, 0)))
        dims = dims or [1]
        dims[min(index, len(dims) - 1)] = draw(st.sampled_from([1.0, 1.5, "1", None, True, [], 2**64, -(2**70)]))
    return dims


NUMBER_TOKENS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1e-999",
    "9" * 5000,
    "-" + "9" * 5000,
    "0." + "1" * 5000,
    "18446744073709551616",
    "-9223372036854775809",
    "null",
    "true",
    '"1"',
    '"NaN"',
    "{}",
    "[]",
    "[[]]",
    "1.5",
    "-0",
    "0x10",
    "01",
    "+1",
    ".5",
]


def deep(depth: int, leaf: str = "1", kind: str = "[") -> RawJson:
    if kind == "[":
        return RawJson("[" * depth + leaf + "]" * depth)
    return RawJson('{"a":' * depth + leaf + "}" * depth)


DEPTHS = [63, 64, 65, 500, 1023, 1024, 1025, 5000, 100_000]


@dataclass(frozen=True)
class Mutation:
    category: str
    protocols: tuple[str, ...]
    build: Callable[[st.DrawFn, Target, str], Case]
    applies: Callable[[Target], bool] = lambda target: True


def _request(draw: st.DrawFn, target: Target, protocol: str = "binary") -> Request:
    # JSON has no way to carry an image's bytes (a string is UTF-8 text): images go binary or gRPC.
    return valid_request(target, images=target.images and protocol != "json" and draw(st.booleans()))


def _pick(draw: st.DrawFn, request: Request) -> Input:
    return request.inputs[draw(st.integers(0, len(request.inputs) - 1))]


def mut_valid(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target, protocol)
    if draw(st.booleans()) and target.versions:
        request.version = draw(st.sampled_from(target.versions))
    return render(request, protocol, "valid", frozenset({200, 204}))


def mut_input_name(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    item = _pick(draw, request)
    how = draw(st.sampled_from(["rename", "drop", "extra", "twice", "junk"]))
    if how == "rename":
        item.name = draw(name_values(target))
    elif how == "drop":
        request.inputs.remove(item)
        if not request.inputs:
            request.inputs.append(Input(draw(name_values(target)), "FP32", [1], np.zeros(1, np.float32)))
    elif how == "extra":
        request.inputs.append(Input(draw(name_values(target)), "FP32", [1, 2], np.ones((1, 2), np.float32)))
    elif how == "twice":
        request.inputs.append(Input(item.name, item.datatype, item.shape, item.array, raw=item.raw))
    elif protocol != "grpc":
        item.name = draw(json_junk())
    return render(request, protocol, "input-name")


def _surrogate(value: Any) -> bool:
    return isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def mut_datatype(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    item = _pick(draw, request)
    junk = protocol != "grpc" and draw(st.integers(0, 4)) == 0
    item.datatype = draw(json_junk()) if junk else draw(st.sampled_from(DATATYPES))
    return render(request, protocol, "datatype")


def mut_shape(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    item = _pick(draw, request)
    grpc = protocol == "grpc"
    dims = draw(shapes(len(item.shape), wire_ints_only=grpc))
    if grpc:
        dims = [max(min(d, INT64_MAX), -(2**63)) for d in dims]
    elif draw(st.integers(0, 9)) == 0:
        dims = draw(json_junk())  # not a list at all
    item.shape = dims
    return render(request, protocol, "shape")


def mut_consistent_shape(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """Shapes that match their data but not the model: a zero dim (no data at all), another rank,
    another batch or channel count; these get past the codec to the model, node or pipeline."""
    request = _request(draw, target)
    item = _pick(draw, request)
    rank = len(item.shape)
    how = draw(st.sampled_from(["zero", "rank", "dims", "scalar"]))
    if how == "scalar":
        shape: list[int] = []
    elif how == "rank":
        shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=rank + 2))
    else:
        shape = list(draw(st.lists(st.integers(0, 70), min_size=rank, max_size=rank)))
        if how == "zero" or math.prod(shape) > 20_000:
            shape[draw(st.integers(0, rank - 1))] = 0
    item.shape = shape
    item.datatype = "FP32" if item.datatype == "BYTES" else item.datatype
    item.array = valid_array(Tensor("x", item.datatype, tuple(shape)))
    return render(request, protocol, "consistent-shape")


def mut_data_size(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    item = _pick(draw, request)
    assert item.array is not None
    flat = item.array.reshape(-1)
    change = draw(st.sampled_from([-1, 1, -len(flat), len(flat), 7]))
    if change < 0:
        item.array = flat[: len(flat) + change]
    else:
        item.array = np.concatenate([flat, flat[:change] if change <= len(flat) else np.resize(flat, change)])
    if protocol == "binary" and draw(st.booleans()):
        item.raw = item.raw_bytes()[: draw(st.integers(0, len(item.raw_bytes())))]  # a truncated section
    return render(request, protocol, "data-size")


def mut_values(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """Numbers out of range for the datatype, and things that are not numbers, inside ``data``."""
    request = _request(draw, target)
    item = _pick(draw, request)
    assert item.array is not None
    if protocol == "grpc":
        return _grpc_values(draw, request, item)
    if protocol == "binary":  # any bytes are valid floats; NaN and inf must still be answered
        special = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, -0.0, 1e-45]))
        flat = item.array.reshape(-1).copy()
        if flat.dtype.kind == "f" and draw(st.booleans()):
            flat[draw(st.integers(0, len(flat) - 1))] = special
        elif flat.dtype.kind == "f":  # all of it: a detector's boxes become NaN for the nodes after it
            flat[:] = special
        item.array = flat.reshape(item.array.shape)
        return render(request, protocol, "values")
    data = list(item.data())
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(0, max(len(data) - 1, 0)))] = RawJson(draw(st.sampled_from(NUMBER_TOKENS)))
    item.json_data = data
    if draw(st.booleans()):  # or an integer datatype, to meet the range checks
        item.datatype = draw(st.sampled_from(["INT8", "UINT8", "INT32", "UINT64", "INT64", "BOOL", "FP16"]))
    return render(request, protocol, "values")


GRPC_SPECIALS: dict[str, list[Any]] = {
    "int_contents": [0, -1, 127, 128, -129, 255, 256, 2**31 - 1, -(2**31)],
    "uint_contents": [0, 1, 255, 256, 65535, 65536, 2**32 - 1],
    "bool_contents": [True, False],
    "fp32_contents": [0.5, math.nan, math.inf, -math.inf, 3e38],
    "int64_contents": [0, 2**63 - 1, -(2**63)],
}


def _grpc_values(draw: st.DrawFn, request: Request, item: Input) -> Case:
    assert item.array is not None
    count = item.array.size
    datatype = draw(st.sampled_from(["INT8", "UINT8", "INT16", "UINT16", "INT32", "FP32", "BOOL", "FP64"]))
    item.datatype = datatype
    message = grpc_message(request)
    index = [t.name for t in message.inputs].index(item.name) if item.name in [t.name for t in message.inputs] else 0
    del message.raw_input_contents[:]
    for other, tensor in enumerate(message.inputs):
        contents = tensor.contents
        if other != index:
            contents.fp32_contents.extend([0.0] * int(np.prod(tensor.shape)))
            continue
        field_name = draw(st.sampled_from(sorted(GRPC_SPECIALS)))
        values: list[Any] = [GRPC_SPECIALS[field_name][0]] * count
        for _ in range(draw(st.integers(1, 3))):  # a few odd values among ordinary ones
            values[draw(st.integers(0, count - 1))] = draw(st.sampled_from(GRPC_SPECIALS[field_name]))
        getattr(contents, field_name).extend(values)
    return Case(request.target.name, "values", "grpc", Grpc(message.SerializeToString()))


def mut_nesting(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    depth = draw(st.sampled_from(DEPTHS))
    where = draw(st.sampled_from(["data", "parameters", "body", "shape", "outputs"]))
    if protocol == "grpc":  # protobuf's own nesting: InferParameter cannot nest, garbage can
        return Case(target.name, "nesting", "grpc", Grpc(b"\x0a\xff\xff\xff\xff\x0f" + b"\x22\x80\x01" * depth))
    item = _pick(draw, request)
    if where == "data" and protocol == "json":
        item.json_data = deep(depth, leaf="1")
    elif where == "parameters":
        request.parameters = deep(depth, kind="{")
    elif where == "shape":
        item.shape = deep(depth, leaf="1")
    elif where == "outputs":
        request.outputs = deep(depth, leaf='{"name": "a"}')
    else:
        body = b"[" * depth + b"]" * depth if draw(st.booleans()) else b'{"a":' * depth + b"1" + b"}" * depth
        return Case(target.name, "nesting", protocol, Rest(rest_path(request), body))
    return render(request, protocol, "nesting")


VERSIONS = [
    "0",
    "-1",
    "+1",
    "1.0",
    "1e0",
    "0x1",
    " 1",
    "1 ",
    "\u00b3",  # '³': str.isdigit says yes
    "\u0663",  # Arabic-Indic three
    "\uff11",  # fullwidth one
    "99",
    "9" * 30,
    str(2**63),
    str(2**64 + 1),
    "abc",
    "latest",
    "",
    "%",
    "..",
    "1/2",
    "\ud800",
]


def mut_version(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    version = draw(st.sampled_from(VERSIONS) | st.integers(-10, 10**6).map(str))
    if protocol == "grpc":
        request.version = version.replace("\ud800", "\ufffd") or "x"
    else:
        request.version = version.encode("utf-8", "surrogatepass").decode("latin-1") if _surrogate(version) else version
    return render(request, protocol, "version")


def mut_model_name(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    name = draw(
        st.sampled_from(["no-such-model", target.name.upper(), target.name + " ", "é", "\U0001f600", "x" * 300])
    )
    request.model = name
    return render(request, protocol, "model-name")


def mut_outputs(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    names = list(target.outputs) + ["no-such-output", "", "\u00e9", target.inputs[0].name]
    if protocol == "grpc":
        request.outputs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3))
        return render(request, protocol, "outputs")
    entry = st.fixed_dictionaries(
        {"name": st.sampled_from(names) | json_junk()},
        optional={"parameters": st.fixed_dictionaries({"binary_data": json_junk()}) | json_junk()},
    )
    request.outputs = draw(st.lists(entry | json_junk(), max_size=3) | json_junk())
    return render(request, protocol, "outputs")


def mut_parameters(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = _request(draw, target)
    if protocol == "grpc":  # every InferParameter is well typed on this wire; send them anyway
        message = grpc_message(request)
        message.parameters["binary_data_output"].string_param = "yes"
        message.inputs[0].parameters["binary_data_size"].int64_param = -1
        message.parameters[draw(st.text(max_size=5))].bool_param = True
        return Case(target.name, "parameters", "grpc", Grpc(message.SerializeToString()))
    item = _pick(draw, request)
    where = draw(st.sampled_from(["request", "input", "binary_data_size", "id"]))
    if where == "request":
        request.parameters = draw(st.fixed_dictionaries({"binary_data_output": json_junk()}) | json_junk())
    elif where == "input":
        item.parameters = draw(json_junk())
    elif where == "binary_data_size":
        size = st.sampled_from([-1, 2**63, 2**64, 1.5, "4", None, True, 10**100]) | json_junk()
        item.parameters = {"binary_data_size": draw(size)}
    else:
        request.top = {"id": draw(json_junk())}
    return render(request, protocol, "parameters")


def mut_body(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """Bodies that are not a KServe request at all."""
    valid = render(_request(draw, target), "json", "body").request
    assert isinstance(valid, Rest)
    how = draw(st.sampled_from(["random", "truncated", "not-object", "utf8", "empty", "bom", "flip"]))
    body: bytes
    if how == "random":
        body = draw(st.binary(max_size=200))
    elif how == "truncated":
        body = valid.body[: draw(st.integers(0, len(valid.body) - 1))]
    elif how == "not-object":
        body = draw(st.sampled_from([b"[]", b"1", b'"inputs"', b"null", b"true", b'{"inputs": {}}', b'{"inputs": []}']))
    elif how == "utf8":  # invalid UTF-8 inside a JSON string
        body = valid.body.replace(b'"name": "', b'"name": "\xff\xfe\xc3', 1)
    elif how == "empty":
        body = b""
    elif how == "bom":
        body = b"\xef\xbb\xbf" + valid.body
    else:
        index = draw(st.integers(0, len(valid.body) - 1))
        body = valid.body[:index] + bytes([valid.body[index] ^ draw(st.integers(1, 255))]) + valid.body[index + 1 :]
    headers: tuple[tuple[str, str], ...] = ()
    if protocol == "binary":
        headers = (("Inference-Header-Content-Length", str(draw(st.integers(0, len(body))))),)
    return Case(target.name, "body", protocol, Rest(valid.path, body, headers))


HEADER_LENGTHS = ["\u00b3", "\u0661\u0662", "-1", "+10", "1 0", "1e3", "0x10", "", "9" * 40, "10.0", "NaN", "\uff11"]


def mut_binary_layout(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """The binary extension's lengths: the header's, each section's, and bytes left over."""
    request = _request(draw, target)
    item = _pick(draw, request)
    how = draw(st.sampled_from(["header-length", "past-body", "size", "trailing", "truncated", "no-size"]))
    if how == "header-length":
        return render_binary(request, "binary-layout", header_length=draw(st.sampled_from(HEADER_LENGTHS)))
    if how == "past-body":
        case = render_binary(request, "binary-layout")
        assert isinstance(case.request, Rest)
        length = str(len(case.request.body) + draw(st.integers(1, 2**40)))
        return render_binary(request, "binary-layout", header_length=length)
    raw = item.raw_bytes()
    if how == "size":
        item.parameters = {"binary_data_size": len(raw) + draw(st.sampled_from([-1, 1, -len(raw), 2**31, 2**62]))}
    elif how == "trailing":
        item.raw = raw + draw(st.binary(min_size=1, max_size=64))
    elif how == "truncated":
        item.raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
        item.parameters = {"binary_data_size": len(raw)}
    else:
        for other in request.inputs:
            other.parameters = {}
        request.inputs.append(Input("extra", "FP32", [1], np.zeros(1, np.float32), parameters={}))
    return render_binary(request, "binary-layout")


def mut_bytes_elements(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """BYTES tensors whose elements are not what their length prefixes say, or not UTF-8."""
    request = _request(draw, target)
    item = _pick(draw, request)
    item.datatype = "BYTES"
    count = draw(st.integers(0, 3))
    item.shape = [count]
    how = draw(st.sampled_from(["invalid-utf8", "huge-prefix", "short-prefix", "no-prefix", "extra"]))
    elements = [b"\xff\xfe\x80", b"\xc3\x28", b"\xed\xa0\x80", b""][: max(count, 1)]
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    if how == "huge-prefix":
        raw = struct.pack("<I", 2**32 - 1) + b"abc"
    elif how == "short-prefix":
        raw = b"\x05\x00"
    elif how == "no-prefix":
        raw = b"hello"
    elif how == "extra":
        raw += b"\x01\x00\x00\x00x"
    item.raw = raw
    item.array = None
    if protocol == "json":
        item.json_data = [RawJson('"\\udc80"'), RawJson('"\\ud800\\u0041"'), 5][: max(count, 1)]
    return render(request, protocol, "bytes-elements")


def jpeg_claiming(height: int, width: int) -> bytes:
    """A JPEG of a few hundred bytes whose header claims ``height`` x ``width`` pixels."""
    small = image_bytes(".jpg", (8, 8))
    marker = small.find(b"\xff\xc0")
    assert marker > 0
    sof = bytearray(small)
    struct.pack_into(">HH", sof, marker + 5, height, width)
    return bytes(sof)


def png_claiming(height: int, width: int) -> bytes:
    small = bytearray(image_bytes(".png", (8, 8)))
    struct.pack_into(">II", small, 16, width, height)  # IHDR (its CRC no longer matches)
    return bytes(small)


@functools.cache
def _photos() -> dict[str, np.ndarray]:
    """A face and a page of text, so that the nodes after the detectors get something to crop."""
    page = skimage.io.imread(Path(skimage.data.__file__).parent / "page.png")
    return {"face": skimage.data.astronaut()[:, :, ::-1], "text": np.repeat(page[:, :, None], 3, axis=2)}


@st.composite
def photos(draw: st.DrawFn) -> bytes:
    """A real photo at an odd size and aspect: crops and resizes at their edges."""
    photo = _photos()[draw(st.sampled_from(["face", "text"]))]
    width, height = draw(st.sampled_from([1, 2, 7, 32, 33, 95, 191, 320, 512, 700])), draw(st.integers(1, 400))
    ok, encoded = cv2.imencode(draw(st.sampled_from([".jpg", ".png"])), cv2.resize(photo, (width, height)))
    assert ok
    return encoded.tobytes()


@st.composite
def image_elements(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["random", "jpeg-huge", "png-huge", "truncated", "tiny", "gray", "empty", "bmp", "valid", "photo", "photo"]
        )
    )
    if kind == "photo":
        return draw(photos())
    if kind == "random":
        return b"\xff\xd8\xff" + draw(st.binary(max_size=300))
    if kind == "jpeg-huge":
        return jpeg_claiming(*draw(st.sampled_from([(60000, 20000), (20000, 20000), (8193, 8193), (65535, 65535)])))
    if kind == "png-huge":
        return png_claiming(*draw(st.sampled_from([(60000, 20000), (2**31 - 1, 1), (100000, 100000)])))
    if kind == "truncated":
        good = image_bytes(draw(st.sampled_from([".jpg", ".png"])))
        return good[: draw(st.integers(0, len(good) - 1))]
    if kind == "tiny":
        return image_bytes(draw(st.sampled_from([".jpg", ".png"])), draw(st.sampled_from([(1, 1), (2, 3), (1, 64)])))
    if kind == "gray":
        ok, encoded = cv2.imencode(".png", np.zeros((16, 16), np.uint8))
        return encoded.tobytes()
    if kind == "bmp":
        ok, encoded = cv2.imencode(".bmp", np.zeros((16, 16, 3), np.uint8))
        return encoded.tobytes()
    return b"" if kind == "empty" else image_bytes(draw(st.sampled_from([".jpg", ".png"])))


def mut_image(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    request = valid_request(target, images=True)
    item = request.inputs[0]
    elements = draw(st.lists(image_elements(), min_size=0, max_size=3))
    item.array = np.empty(len(elements), dtype=object)
    item.array[:] = elements
    item.shape = draw(st.sampled_from([[len(elements)], [1, len(elements)], [len(elements), 1, 1, 1]]))
    return render(request, protocol, "image")


def mut_photo(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """One real photo at an odd size, so the pipeline runs through its nodes: 200 or 204, or 400 if too small
    for a model's kernels."""
    request = valid_request(target, images=True)
    request.inputs[0].array = np.array([draw(photos())], dtype=object)
    return render(request, protocol, "photo", frozenset({200, 204, 400}))


def mut_model_shape(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """Shapes the metadata allows but the model cannot run (smaller than its kernels)."""
    request = _request(draw, target)
    shape = draw(st.sampled_from(target.bad_shapes))
    item = request.inputs[0]
    item.shape = list(shape)
    item.array = valid_array(Tensor(item.name, "FP32", shape))
    item.datatype = "FP32"
    return render(request, protocol, "model-shape")


def mut_oversize(draw: st.DrawFn, target: Target, protocol: str, limit: int = 8 << 20) -> Case:
    """A body above the server's max_request_bytes (tests/integration/conftest.py's MAX_REQUEST_BYTES)."""
    size = limit + draw(st.sampled_from([1, 4096]))
    if protocol == "grpc":
        request = valid_request(target)
        message = grpc_message(request)
        message.raw_input_contents[0] = b"\0" * size
        return Case(target.name, "oversize", "grpc", Grpc(message.SerializeToString()))
    chunked = draw(st.booleans())
    body = b"{" + b" " * size + b"}"
    return Case(target.name, "oversize", protocol, Rest(rest_path(Request(target, [])), body, (), chunked), {413})


def mut_grpc_garbage(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """Messages that do not parse, or parse into something odd: random, cut, flipped, bad UTF-8."""
    valid = grpc_message(_request(draw, target)).SerializeToString()
    how = draw(st.sampled_from(["random", "truncated", "flip", "utf8", "varint", "wire-type"]))
    if how == "random":
        message = draw(st.binary(max_size=300))
    elif how == "truncated":
        message = valid[: draw(st.integers(0, len(valid) - 1))]
    elif how == "flip":
        index = draw(st.integers(0, len(valid) - 1))
        message = valid[:index] + bytes([valid[index] ^ draw(st.integers(1, 255))]) + valid[index + 1 :]
    elif how == "utf8":  # model_name (field 1) that is not UTF-8: protobuf refuses to build it
        message = b"\x0a\x03\xff\xfe\xc3" + valid
    elif how == "varint":
        message = b"\x0a" + b"\xff" * 11
    else:
        message = b"\x0f" + valid  # field 1 with wire type 7, which does not exist
    return Case(target.name, "grpc-garbage", "grpc", Grpc(message))


def mut_grpc_contents(draw: st.DrawFn, target: Target, protocol: str) -> Case:
    """Typed contents and raw_input_contents that disagree with each other or the datatype."""
    request = _request(draw, target)
    how = draw(st.sampled_from(["both", "raw-count", "wrong-field", "typed", "typed-count", "fp16-typed"]))
    typed = how in ("both", "wrong-field", "typed", "typed-count", "fp16-typed")
    message = grpc_message(request, typed=typed)
    tensor = message.inputs[0]
    if how == "both":
        message.raw_input_contents.append(b"\0" * 4)
    elif how == "raw-count":
        message.raw_input_contents.append(b"\0" * 4)
    elif how == "wrong-field":
        tensor.contents.int64_contents.extend([1, 2])
    elif how == "typed-count":
        tensor.contents.fp32_contents.append(1.0)
    elif how == "fp16-typed":
        tensor.datatype = "FP16"
    return Case(target.name, "grpc-contents", "grpc", Grpc(message.SerializeToString()))


ALL = ("json", "binary", "grpc")
REST = ("json", "binary")

MUTATIONS = (
    Mutation("valid", ALL, mut_valid),
    Mutation("input-name", ALL, mut_input_name),
    Mutation("datatype", ALL, mut_datatype),
    Mutation("shape", ALL, mut_shape),
    Mutation("consistent-shape", ALL, mut_consistent_shape),
    Mutation("data-size", ALL, mut_data_size),
    Mutation("values", ALL, mut_values),
    Mutation("nesting", ALL, mut_nesting),
    Mutation("version", ALL, mut_version),
    Mutation("model-name", ALL, mut_model_name),
    Mutation("outputs", ALL, mut_outputs),
    Mutation("parameters", ALL, mut_parameters),
    Mutation("body", REST, mut_body),
    Mutation("binary-layout", ("binary",), mut_binary_layout),
    Mutation("bytes-elements", ALL, mut_bytes_elements),
    Mutation("image", ALL, mut_image, lambda target: target.images),
    Mutation("photo", ("binary", "grpc"), mut_photo, lambda target: target.images),
    Mutation("model-shape", ALL, mut_model_shape, lambda target: bool(target.bad_shapes)),
    Mutation("grpc-garbage", ("grpc",), mut_grpc_garbage),
    Mutation("grpc-contents", ("grpc",), mut_grpc_contents),
)


@st.composite
def cases(draw: st.DrawFn, targets: tuple[Target, ...], oversize_every: int = 200) -> Case:
    """One malformed request: a target, a wire, then one thing wrong with it."""
    target = draw(st.sampled_from(targets))
    if draw(st.sampled_from(range(oversize_every))) == 0:  # 8 MiB each: now and then, not one case in 18
        return mut_oversize(draw, target, draw(st.sampled_from(ALL)))
    mutation = draw(st.sampled_from([m for m in MUTATIONS if m.applies(target)]))
    protocol = draw(st.sampled_from(mutation.protocols))
    return mutation.build(draw, target, protocol)
