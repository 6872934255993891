import json

import numpy as np
import pytest

from app.errors import (
    InvalidContentSize,
    InvalidShape,
    JsonInvalid,
    MalformedRequest,
    ModelVersionNotFound,
    http_status,
)
from app.inference import InferRequest, InferResponse, RequestedOutput
from app.kserve_rest import decode_request, encode_response, parse_version
from app.tensors import pack_bytes, unpack_bytes


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, int]:
    raw = json.dumps(header).encode()
    return raw + b"".join(chunks), len(raw)


def test_json_tensor_with_nested_data():
    body = json.dumps(
        {"id": "7", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}]}
    )
    request = decode_request("m", None, body.encode(), None)
    assert request.id == "7"
    np.testing.assert_array_equal(request.inputs["x"], np.array([[1, 2], [3, 4]], np.int32))


def test_ragged_nesting_is_read_in_row_major_order_as_the_shape_says():
    body = b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [[1, 2], [3]]}]}'
    np.testing.assert_array_equal(decode_request("m", None, body, None).inputs["x"], np.array([1, 2, 3], np.float32))


@pytest.mark.parametrize(
    "body, text",
    [
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [NaN]}]}', "not valid JSON"),
        (b'{"inputs": [{"name": "\\ud800", "shape": [1], "datatype": "FP32", "data": [1]}]}', "surrogate"),
        (b"[" * 5000 + b"]" * 5000, "depth"),
    ],
)
def test_json_beyond_the_standard_is_refused_with_a_reason(body, text):
    with pytest.raises(JsonInvalid, match=text):
        decode_request("m", None, body, None)


def test_binary_tensors_follow_the_json_header_in_order():
    a, b = np.arange(6, dtype=np.float32), np.array([7], np.int64)
    body, length = binary_body(
        {
            "inputs": [
                {"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": a.nbytes}},
                {"name": "b", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": b.nbytes}},
            ]
        },
        a.tobytes(),
        b.tobytes(),
    )
    request = decode_request("m", 2, body, length)
    np.testing.assert_array_equal(request.inputs["a"], a.reshape(2, 3))
    np.testing.assert_array_equal(request.inputs["b"], b)
    assert request.version == 2


def test_single_binary_input_may_omit_its_size():
    a = np.ones((1, 4), np.float32)
    body, length = binary_body({"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32"}]}, a.tobytes())
    np.testing.assert_array_equal(decode_request("m", None, body, length).inputs["a"], a)


def test_bytes_elements_carry_length_prefixes():
    strings = np.array([b"String_123", b"", b"zebra"], dtype=object)
    packed = pack_bytes(strings)
    assert packed[:4] == (10).to_bytes(4, "little")
    body, length = binary_body(
        {"inputs": [{"name": "s", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": len(packed)}}]},
        packed,
    )
    assert list(decode_request("m", None, body, length).inputs["s"]) == [b"String_123", b"", b"zebra"]


def test_bytes_length_prefix_past_the_end_is_refused():
    with pytest.raises(InvalidContentSize, match="declares 99 bytes"):
        unpack_bytes((99).to_bytes(4, "little") + b"abc", 1, "s")


def test_truncated_binary_body_names_the_tensor_and_sizes():
    a = np.ones(10, np.float32)
    body, length = binary_body(
        {"inputs": [{"name": "a", "shape": [10], "datatype": "FP32", "parameters": {"binary_data_size": 40}}]},
        a.tobytes(),
    )
    with pytest.raises(
        InvalidContentSize, match="input 'a' declares binary_data_size 40, but only 36 bytes remain"
    ) as caught:
        decode_request("m", None, body[:-4], length)
    assert http_status(caught.value) == 400


def test_size_not_matching_shape_is_refused():
    body, length = binary_body(
        {"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}, b"\0" * 8
    )
    with pytest.raises(InvalidContentSize, match="8 bytes given; expected 12"):
        decode_request("m", None, body, length)


def test_bytes_left_over_after_the_inputs_are_refused():
    body, length = binary_body(
        {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}, b"\0" * 9
    )
    with pytest.raises(InvalidContentSize, match="5 bytes of binary data"):
        decode_request("m", None, body, length)


def test_header_length_beyond_the_body():
    with pytest.raises(InvalidContentSize, match="Inference-Header-Content-Length is 500"):
        decode_request("m", None, b"{}", 500)


@pytest.mark.parametrize(
    "body, error, text",
    [
        (b"{not json", JsonInvalid, "not valid JSON"),
        (b"[1, 2]", MalformedRequest, "JSON list"),
        (b"{}", MalformedRequest, "request has no 'inputs'"),
        (b'{"inputs": []}', MalformedRequest, "'inputs' is empty"),
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}', MalformedRequest, "neither 'data'"),
        (b'{"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32", "data": [1]}]}', InvalidShape, "non-negative"),
        (
            b'{"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1]}]}',
            InvalidContentSize,
            "1 values given; expected 2",
        ),
        (
            b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP33", "data": [1]}]}',
            Exception,
            "unknown datatype 'FP33'",
        ),
        (
            b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": ["x"]}]}',
            MalformedRequest,
            "FP32 data holds strings; expected numbers",
        ),
    ],
)
def test_malformed_requests_say_what_is_wrong(body, error, text):
    with pytest.raises(error, match=text):
        decode_request("m", None, body, None)


def test_malformed_json_is_412_as_in_ovms():
    with pytest.raises(JsonInvalid) as caught:
        decode_request("m", None, b"{", None)
    assert http_status(caught.value) == 412


def test_versions_in_urls_are_positive_integers():
    assert parse_version("3") == 3
    assert parse_version(None) is None
    for text in ("0", "x", "-1"):
        with pytest.raises(ModelVersionNotFound):
            parse_version(text)


def test_response_mixes_json_and_binary_outputs():
    outputs = {"a": np.arange(3, dtype=np.float32), "s": np.array([b"hi", b"there"], dtype=object)}
    request = InferRequest(
        "m", None, {}, outputs=[RequestedOutput("a", binary=True), RequestedOutput("s", binary=False)]
    )
    body, headers = encode_response(InferResponse("m", 1, outputs, id="x"), request)
    length = int(headers["inference-header-content-length"])
    header = json.loads(body[:length])
    assert header["model_version"] == "1" and header["id"] == "x"
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 12
    assert header["outputs"][1]["data"] == ["hi", "there"]
    np.testing.assert_array_equal(np.frombuffer(body[length:], np.float32), outputs["a"])


def test_response_is_plain_json_without_binary_outputs():
    body, headers = encode_response(
        InferResponse("m", 2, {"a": np.ones((1, 2), np.float16)}), InferRequest("m", None, {})
    )
    assert headers == {"content-type": "application/json"}
    assert json.loads(body)["outputs"] == [{"name": "a", "datatype": "FP16", "shape": [1, 2], "data": [1.0, 1.0]}]


def test_float32_outputs_are_written_as_float32_values():
    # 0.1 as a float32 is 0.100000001490116...; written through a Python float it would say so.
    body, _ = encode_response(
        InferResponse("m", 1, {"a": np.array([[0.1, 2.5]], np.float32)}), InferRequest("m", None, {})
    )
    assert b'"data":[0.1,2.5]' in body


def test_request_level_binary_default_applies_to_unlisted_outputs():
    request = InferRequest("m", None, {}, binary_outputs=True)
    body, headers = encode_response(InferResponse("m", 1, {"a": np.ones(2, np.int32)}), request)
    assert headers["content-type"] == "application/octet-stream"
    assert body.endswith(np.ones(2, np.int32).tobytes())


def json_input(datatype: str, data: object, shape: list | None = None) -> bytes:
    shape = shape if shape is not None else [len(data)] if isinstance(data, list) else [1]
    text = data if isinstance(data, str) else json.dumps(data)  # json: orjson refuses ints beyond 64 bits
    spec = f'"name": "a", "shape": {json.dumps(shape)}, "datatype": "{datatype}", "data": {text}'
    return f'{{"inputs": [{{{spec}}}]}}'.encode()


@pytest.mark.parametrize(
    "datatype, data, text",
    [
        ("FP32", [1.0, None], "FP32 data holds null"),  # numpy would read null as NaN
        ("FP32", ["1.5"], "FP32 data holds strings"),  # ... and "1.5" as a number
        ("FP32", [True], "FP32 data holds true/false"),
        ("BOOL", [1, 0], "BOOL data holds integers; expected true or false"),
        ("UINT8", [300], "value 300 is out of range for UINT8; expected 0 to 255"),
        ("INT8", [-129], "value -129 is out of range for INT8"),
        ("UINT32", [-1], "value -1 is out of range for UINT32"),
        ("INT32", [1.5], "INT32 value 1.5 is not an integer"),
        ("INT64", [2**63], "value 9223372036854775808 is out of range for INT64"),
        ("INT64", [2**64, -1], "out of range for INT64"),  # orjson reads it as a float
        ("INT32", [1, {}], "INT32 data holds null or objects"),
    ],
)
def test_json_data_not_of_the_tensors_type_is_refused_not_coerced(datatype, data, text):
    with pytest.raises(MalformedRequest, match=text) as caught:
        decode_request("m", None, json_input(datatype, data), None)
    assert "input 'a'" in str(caught.value) and http_status(caught.value) == 400


@pytest.mark.parametrize(
    "datatype, data, expected",
    [
        ("INT32", [1.0, 2.0], np.array([1, 2], np.int32)),  # integral floats are integers
        ("FP32", [1, 2.5], np.array([1, 2.5], np.float32)),  # integers are numbers
        ("UINT64", [2**64 - 1], np.array([2**64 - 1], np.uint64)),
        ("FP16", [1e6], np.array([np.inf], np.float16)),  # beyond the float type's range: inf, as IEEE gives
        ("BOOL", [True, False], np.array([True, False])),
        ("FP32", [], np.empty(0, np.float32)),
    ],
)
def test_json_data_that_fits_its_datatype_converts(datatype, data, expected):
    array = decode_request("m", None, json_input(datatype, data), None).inputs["a"]
    assert array.dtype == expected.dtype
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize(
    "shape, text",
    [
        ([2**63 - 1, 0], "more than 1099511627776 elements"),  # numpy refuses even with a zero dim
        ([0] * 65, "65 dims; expected at most 64"),
        ([True], "expected non-negative integers"),
    ],
)
def test_shapes_numpy_cannot_hold_are_refused_before_anything_is_made(shape, text):
    with pytest.raises(InvalidShape, match=text) as caught:
        decode_request("m", None, json_input("FP32", [], shape), None)
    assert http_status(caught.value) == 400


def test_data_nested_deeper_than_python_recurses_is_read_or_refused_without_a_crash():
    deep = "[" * 1000 + "1.0" + ", 2.0]" * 1000  # within orjson's nesting limit, beyond Python's recursion limit
    with pytest.raises(InvalidContentSize, match="1001 values given; expected 1"):
        decode_request("m", None, json_input("FP32", deep, [1]), None)


@pytest.mark.parametrize("text", ["\u00b3", "\u0663", "1\u00b2"])
def test_a_version_of_non_ascii_digits_is_not_a_version(text):
    with pytest.raises(ModelVersionNotFound):
        parse_version(text.encode().decode("unicode_escape"))
