"""The KServe v2 gRPC codec and RPC methods over in-process models: every datatype, raw and typed
contents, BYTES, errors and their status codes, no Ray."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from app import errors
from app.dataplane import DataPlane
from app.inference import InferResponse
from app.kserve_grpc import TYPED_FIELDS, KServeGrpcMethods, decode_request, encode_response, error_status
from app.kserve_v2 import grpc_predict_v2_pb2 as pb
from app.metrics import ServingMetrics
from app.pipeline.errors import DemultiplexerNoResults, PipelineInvalid
from app.tensors import DTYPES, pack_bytes
from tests import factory
from tests.unit.test_metrics import sample


def examples() -> dict[str, np.ndarray]:
    """One [2,3] tensor per KServe datatype, with each type's extremes where it has them."""
    out = {}
    for datatype, dtype in DTYPES.items():
        if datatype == "BYTES":
            values = [b"", b"a", "é".encode(), b"\x00\xff", b"x" * 300, b"last"]
            array = np.empty(6, dtype=object)
            array[:] = values
        elif datatype == "BOOL":
            array = np.array([True, False, True, True, False, False])
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            array = np.array([info.min, info.max, 0, 1, info.max // 2, info.min // 2 + 1], dtype=dtype)
        else:
            info = np.finfo(dtype)
            array = np.array([info.min, info.max, 0.0, -1.5, info.tiny, np.inf], dtype=dtype)
        out[datatype] = array.reshape(2, 3)
    return out


EXAMPLES = examples()


def request_with_raw(arrays: dict[str, np.ndarray]) -> pb.ModelInferRequest:
    """What tritonclient.grpc sends: every input's bytes in raw_input_contents."""
    request = pb.ModelInferRequest(model_name="m")
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == object else next(d for d, t in DTYPES.items() if t == array.dtype)
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        raw = pack_bytes(array) if datatype == "BYTES" else array.tobytes()
        request.raw_input_contents.append(raw)
    return request


def typed_input(request: pb.ModelInferRequest, name: str, datatype: str, shape, field: str, values):
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return tensor


@pytest.mark.parametrize("datatype", list(DTYPES))
def test_every_datatype_round_trips_raw_both_ways(datatype):
    array = EXAMPLES[datatype]
    decoded = decode_request(request_with_raw({"t": array})).inputs["t"]
    assert decoded.dtype == array.dtype and decoded.shape == (2, 3)
    np.testing.assert_array_equal(decoded, array)
    reply = encode_response(InferResponse("m", 1, {"out": decoded}))
    (output,) = reply.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("out", datatype, [2, 3])
    again = request_with_raw({"t": array})
    assert reply.raw_output_contents[0] == again.raw_input_contents[0]


@pytest.mark.parametrize("datatype", [d for d in DTYPES if d != "FP16"])
def test_typed_contents_decode_like_raw(datatype):
    array = EXAMPLES[datatype]
    field, _ = TYPED_FIELDS[datatype]
    request = pb.ModelInferRequest(model_name="m")
    typed_input(request, "t", datatype, array.shape, field, array.reshape(-1).tolist())
    decoded = decode_request(request).inputs["t"]
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, decode_request(request_with_raw({"t": array})).inputs["t"])


def test_bytes_elements_keep_their_exact_bytes():
    decoded = decode_request(request_with_raw({"s": EXAMPLES["BYTES"]})).inputs["s"]
    assert decoded.reshape(-1).tolist() == [b"", b"a", "é".encode(), b"\x00\xff", b"x" * 300, b"last"]
    assert pack_bytes(np.array([b"ab"], dtype=object)) == b"\x02\x00\x00\x00ab"  # 4-byte little-endian length


def test_several_inputs_keep_their_order_and_request_fields_carry_over():
    request = request_with_raw({"x": EXAMPLES["FP32"], "k": EXAMPLES["INT64"]})
    request.model_version, request.id = "3", "req-7"
    request.parameters["sequence_id"].int64_param = 5  # Triton's parameter: accepted, unused
    request.inputs[0].parameters["binary_data_size"].int64_param = 24
    request.outputs.add(name="sum").parameters["binary_data"].bool_param = True
    request.outputs.add(name="double")
    decoded = decode_request(request)
    assert decoded.model_name == "m" and decoded.version == 3 and decoded.id == "req-7"
    assert list(decoded.inputs) == ["x", "k"] and decoded.output_names() == ["sum", "double"]
    np.testing.assert_array_equal(decoded.inputs["k"], EXAMPLES["INT64"])


def test_defaults_version_and_id_and_every_output():
    decoded = decode_request(request_with_raw({"x": EXAMPLES["FP32"]}))
    assert decoded.version is None and decoded.id is None and decoded.outputs == []


def test_response_carries_name_version_and_id_and_outputs_in_order():
    reply = encode_response(InferResponse("m", 2, {"b": EXAMPLES["INT8"], "a": EXAMPLES["FP64"]}, id="x1"))
    assert (reply.model_name, reply.model_version, reply.id) == ("m", "2", "x1")
    assert [o.name for o in reply.outputs] == ["b", "a"] and len(reply.raw_output_contents) == 2
    np.testing.assert_array_equal(
        np.frombuffer(reply.raw_output_contents[1], np.float64).reshape(2, 3), EXAMPLES["FP64"]
    )
    assert encode_response(InferResponse("m", 1, {})).id == ""


def bad(**changes):
    """A one-input FP32 [1,2] request with raw contents, then ``changes`` applied to it."""
    request = request_with_raw({"x": np.zeros((1, 2), np.float32)})
    for key, value in changes.items():
        value(request) if callable(value) else setattr(request, key, value)
    return request


def typed(datatype, field, values, shape=(1, 2)):
    request = pb.ModelInferRequest(model_name="m")
    typed_input(request, "x", datatype, shape, field, values)
    return request


@pytest.mark.parametrize(
    "request_, error, message",
    [
        (pb.ModelInferRequest(model_name="m"), errors.MalformedRequest, "the request has no inputs"),
        (
            bad(extra=lambda r: r.raw_input_contents.append(b"")),
            errors.MalformedRequest,
            "raw_input_contents has 2 entries for 1 inputs",
        ),
        (
            bad(extra=lambda r: r.inputs[0].contents.fp32_contents.extend([1, 2])),
            errors.MalformedRequest,
            "input 'x' has typed contents, and the request has raw_input_contents",
        ),
        (
            bad(extra=lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 7)),
            errors.InvalidContentSize,
            "input 'x': 7 bytes given; expected 8 for shape [1, 2] of FP32",
        ),
        (
            bad(extra=lambda r: r.inputs[0].__setattr__("datatype", "FLOAT")),
            errors.InvalidPrecision,
            "unknown datatype 'FLOAT'",
        ),
        (
            bad(extra=lambda r: r.inputs[0].shape.__setitem__(0, -1)),
            errors.InvalidShape,
            "input 'x' shape [-1, 2]; expected non-negative integers",
        ),
        (
            bad(
                extra=lambda r: (
                    r.inputs.add(name="x", datatype="FP32", shape=[1, 2]),
                    r.raw_input_contents.append(b"\0" * 8),
                )
            ),
            errors.MalformedRequest,
            "input 'x' is given twice",
        ),
        (
            typed("FP32", "int_contents", [1, 2]),
            errors.MalformedRequest,
            "input 'x' is FP32, whose values go in contents.fp32_contents; the request filled contents.int_contents",
        ),
        (
            typed("FP32", "fp32_contents", [1.0]),
            errors.InvalidContentSize,
            "input 'x': 1 values in contents.fp32_contents; expected 2 for shape [1, 2]",
        ),
        (
            typed("INT8", "int_contents", [1, 300]),
            errors.MalformedRequest,
            "input 'x': value 300 is out of range for INT8",
        ),
        (
            typed("UINT16", "uint_contents", [70000, 1]),
            errors.MalformedRequest,
            "value 70000 is out of range for UINT16",
        ),
        (
            typed("FP16", "fp32_contents", [1.0, 2.0]),
            errors.MalformedRequest,
            "input 'x' is FP16, which has no typed contents field; send it in raw_input_contents",
        ),
        (typed("BYTES", "bytes_contents", [b"a"]), errors.InvalidContentSize, "1 values in contents.bytes_contents"),
        (
            bad(
                extra=lambda r: (
                    r.inputs[0].__setattr__("datatype", "BYTES"),
                    r.raw_input_contents.__setitem__(0, b"\x05\0\0\0ab"),
                )
            ),
            errors.InvalidContentSize,
            "input 'x': BYTES element 0 declares 5 bytes, 2 remain",
        ),
        (
            bad(model_version="latest"),
            errors.ModelVersionInvalidFormat,
            "invalid model version format in request - model_version is 'latest'; expected an integer",
        ),
        (bad(model_version="0"), errors.ModelVersionNotFound, "version 0; versions are positive integers"),
    ],
    ids=[
        "no-inputs",
        "raw-count",
        "raw-and-typed",
        "raw-size",
        "unknown-datatype",
        "negative-dim",
        "twice",
        "wrong-field",
        "typed-count",
        "int8-range",
        "uint16-range",
        "fp16-typed",
        "bytes-count",
        "bytes-prefix",
        "version-text",
        "version-zero",
    ],
)
def test_bad_requests_name_what_was_wrong(request_, error, message):
    with pytest.raises(error) as caught:
        decode_request(request_)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "exc, code",
    [
        (errors.ModelNotFound("'x'"), grpc.StatusCode.NOT_FOUND),
        (errors.ModelVersionNotLoadedYet("v"), grpc.StatusCode.NOT_FOUND),
        (PipelineInvalid("p", "PIPELINE_CYCLE_FOUND", "a cycle"), grpc.StatusCode.NOT_FOUND),
        (errors.UnexpectedInput("'y'"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.ModelVersionInvalidFormat("v"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.JsonInvalid("j"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.RequestTooLarge("big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.InferenceFailed("boom"), grpc.StatusCode.INTERNAL),
        (DemultiplexerNoResults("p", "n", "o"), grpc.StatusCode.ABORTED),
        (errors.ServingError("other"), grpc.StatusCode.INTERNAL),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name,
)
def test_each_error_class_has_ovms_grpc_status_and_keeps_its_message(exc, code):
    assert error_status(exc) == (code, exc.message)


def test_wrapped_and_unknown_errors():
    try:
        try:
            raise errors.MissingInput("'b'")
        except errors.MissingInput as inner:
            raise RuntimeError("replica call failed") from inner
    except RuntimeError as outer:
        assert error_status(outer) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing input with specific name - 'b'")
    assert error_status(KeyError("k")) == (grpc.StatusCode.INTERNAL, "Internal server error - KeyError: 'k'")


def test_our_stubs_and_tritonclients_share_a_process_and_a_wire():
    # Both define inference.*: ours live in their own descriptor pool (generate.sh), so
    # importing one never breaks the other, and their bytes are interchangeable.
    from tritonclient.grpc import service_pb2 as triton_pb

    ours = request_with_raw({"x": EXAMPLES["FP32"]})
    ours.parameters["p"].string_param = "v"
    theirs = triton_pb.ModelInferRequest.FromString(ours.SerializeToString())
    assert theirs.inputs[0].name == "x" and theirs.raw_input_contents[0] == ours.raw_input_contents[0]
    assert pb.ModelInferRequest.FromString(theirs.SerializeToString()) == ours


# --- the RPC methods over in-process models ---------------------------------------------------


class Context:
    """Records what an RPC sets, as Ray Serve's RayServegRPCContext would carry it to the client."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


class Front(KServeGrpcMethods):
    def __init__(self, dataplane: DataPlane, metrics: ServingMetrics, max_request_bytes: int) -> None:
        self.dataplane, self.metrics, self.max_request_bytes = dataplane, metrics, max_request_bytes


@pytest.fixture(scope="module")
def front(tmp_path_factory) -> Front:
    dataplane = factory.local_dataplane(tmp_path_factory.mktemp("models"))
    return Front(dataplane, ServingMetrics(), max_request_bytes=4096)


def call(front: Front, method: str, request):
    context = Context()
    reply = asyncio.run(getattr(front, method)(request, grpc_context=context))
    return reply, context


def dummy_request(
    version: str = "", value: float = 0.5, name: str = "b", model: str = "dummy", columns: int = 10
) -> pb.ModelInferRequest:
    request = request_with_raw({name: np.full((1, columns), value, np.float32)})
    request.model_name, request.model_version = model, version
    return request


def test_server_ready_follows_the_config_starting_as_rest_does(tmp_path):
    starting = Front(DataPlane({}, ready=False), ServingMetrics(), max_request_bytes=4096)
    assert not call(starting, "ServerReady", pb.ServerReadyRequest())[0].ready
    assert call(starting, "ServerLive", pb.ServerLiveRequest())[0].live


def test_server_rpcs(front):
    assert call(front, "ServerLive", pb.ServerLiveRequest())[0].live
    assert call(front, "ServerReady", pb.ServerReadyRequest())[0].ready
    reply, _ = call(front, "ServerMetadata", pb.ServerMetadataRequest())
    assert (reply.name, reply.version, list(reply.extensions)) == (
        "rayvino",
        factory.project_version(),
        ["binary_tensor_data"],
    )


@pytest.mark.parametrize(
    "name, version, ready, code, details",
    [
        ("dummy", "", True, None, ""),
        ("dummy", "3", True, None, ""),
        ("broken", "", False, None, ""),  # known but not loaded: OVMS answers ready=false over gRPC
        ("dummy", "2", False, grpc.StatusCode.NOT_FOUND, "Model with requested version is not found"),
        ("nope", "", False, grpc.StatusCode.NOT_FOUND, "Model with requested name is not found - 'nope'"),
        ("dummy", "one", False, grpc.StatusCode.INVALID_ARGUMENT, "invalid model version format in request"),
    ],
)
def test_model_ready(front, name, version, ready, code, details):
    reply, context = call(front, "ModelReady", pb.ModelReadyRequest(name=name, version=version))
    assert reply.ready is ready and context.code == code and details in context.details


def test_model_metadata_matches_rest(front):
    reply, context = call(front, "ModelMetadata", pb.ModelMetadataRequest(name="dummy"))
    assert context.code is None
    assert (reply.name, list(reply.versions), reply.platform) == ("dummy", ["1", "3"], "OpenVINO")
    assert [(t.name, t.datatype, list(t.shape)) for t in reply.inputs] == [("b", "FP32", [1, 10])]
    assert [(t.name, t.datatype, list(t.shape)) for t in reply.outputs] == [("a", "FP32", [1, 10])]
    _, context = call(front, "ModelMetadata", pb.ModelMetadataRequest(name="dummy", version="2"))
    assert context.code == grpc.StatusCode.NOT_FOUND


def test_model_infer_default_and_given_version(front):
    reply, context = call(front, "ModelInfer", dummy_request())
    assert context.code is None and reply.model_version == "3" and reply.outputs[0].name == "a"
    np.testing.assert_array_equal(np.frombuffer(reply.raw_output_contents[0], np.float32), [3.5] * 10)
    request = dummy_request("1")
    request.id = "abc"
    reply, _ = call(front, "ModelInfer", request)
    assert reply.model_version == "1" and reply.id == "abc"


@pytest.mark.parametrize(
    "request_, code, details",
    [
        (dummy_request(name="c"), grpc.StatusCode.INVALID_ARGUMENT, "Unexpected input name"),
        (dummy_request("2"), grpc.StatusCode.NOT_FOUND, "Model with requested version is not found"),
        (pb.ModelInferRequest(model_name="nope"), grpc.StatusCode.NOT_FOUND, "Model with requested name is not found"),
        (dummy_request(model="broken"), grpc.StatusCode.NOT_FOUND, "Model with requested version is not loaded yet"),
        (dummy_request(columns=2000), grpc.StatusCode.RESOURCE_EXHAUSTED, "exceeds the limit of 4096 bytes"),
    ],
    ids=["wrong-input", "unknown-version", "unknown-model", "not-loaded", "too-large"],
)
def test_model_infer_errors_set_status_and_details_and_an_empty_reply(front, request_, code, details):
    reply, context = call(front, "ModelInfer", request_)
    assert context.code == code and details in context.details
    assert reply == pb.ModelInferResponse()


def test_without_a_context_errors_are_raised(front):
    with pytest.raises(errors.ModelNotFound):
        asyncio.run(front.ModelInfer(pb.ModelInferRequest(model_name="nope")))


def test_requests_are_counted_with_interface_grpc(front):
    labels = {"api": "KServe", "interface": "gRPC", "method": "ModelInfer", "name": "dummy"}
    before = sample(front.metrics.exposition().decode(), "ovms_requests_success", version="1", **labels) or 0
    call(front, "ModelInfer", dummy_request("1"))
    call(front, "ModelInfer", dummy_request("1", name="c"))
    call(front, "ModelReady", pb.ModelReadyRequest(name="nope"))  # unknown names are not counted
    text = front.metrics.exposition().decode()
    assert sample(text, "ovms_requests_success", version="1", **labels) == before + 1
    assert sample(text, "ovms_requests_fail", version="1", **labels) >= 1
    assert sample(text, "ovms_request_time_us_count", interface="gRPC", name="dummy", version="1") >= 1
    assert 'name="nope"' not in text


@pytest.mark.parametrize("shape", [[2**63 - 1, 0], [0] * 65])
def test_a_shape_numpy_cannot_hold_is_invalid_argument(shape):
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="FP32", shape=shape)
    request.raw_input_contents.append(b"")
    with pytest.raises(errors.InvalidShape, match="input 'a'") as caught:
        decode_request(request)
    assert error_status(caught.value)[0] == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("version", ["\u00b3", "\u0663"])
def test_a_version_of_non_ascii_digits_is_invalid_argument(version):
    request = pb.ModelInferRequest(model_name="m", model_version=version)
    request.inputs.add(name="a", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    with pytest.raises(errors.ModelVersionInvalidFormat):
        decode_request(request)


def test_a_message_that_does_not_parse_is_invalid_argument_and_the_server_goes_on(front):
    from app.kserve_grpc import add_inference_service
    from app.kserve_v2.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    async def scenario() -> tuple[list, pb.ModelInferResponse]:
        server = grpc.aio.server()
        add_inference_service(front, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
                refused = []
                for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x12\x02\x08"):
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await raw(garbage)
                    refused.append((caught.value.code(), caught.value.details()))
                return refused, await GRPCInferenceServiceStub(channel).ModelInfer(dummy_request())
        finally:
            await server.stop(0)

    refused, answer = asyncio.run(scenario())
    assert set(refused) == {
        (grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid inference.ModelInferRequest")
    }
    assert answer.model_name == "dummy" and answer.outputs[0].name == "a"
