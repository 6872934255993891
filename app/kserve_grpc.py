"""KServe v2 gRPC wire (``inference.GRPCInferenceService``): protos in, protos out, over a DataPlane.

The codec turns a ModelInferRequest into the wire-free ``InferRequest`` and an ``InferResponse``
into a ModelInferResponse. ``KServeGrpcMethods`` holds the six RPCs, named as Ray Serve's gRPC
proxy routes them (by method name), for the ingress that also serves REST: both call the same
DataPlane, so a model answers alike on either wire.

Inputs come as ``raw_input_contents`` (one buffer per input, in input order; BYTES elements
length-prefixed as in REST's binary extension) or as typed ``contents`` fields, never both.
Outputs always go back raw, as OVMS and Triton answer. Request parameters are accepted and, as
in REST, those the server has no use for are ignored; REST's binary_data* parameters mean nothing
here, since gRPC tensors are always binary.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Protocol, TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message

from app.dataplane import DataPlane
from app.errors import (
    InvalidContentSize,
    MalformedRequest,
    ModelVersionInvalidFormat,
    ModelVersionNotFound,
    ModelVersionNotLoadedAnymore,
    ModelVersionNotLoadedYet,
    RequestTooLarge,
    fault_summary,
    find_serving_error,
    grpc_status,
)
from app.inference import InferRequest, InferResponse, RequestedOutput
from app.kserve_v2 import grpc_predict_v2_pb2 as pb
from app.metrics import GRPC, ServingMetrics
from app.pipeline.errors import PipelineNotLoadedYet
from app.tensors import check_range, checked_shape, datatype_of, dtype_of, from_raw, to_raw

log = logging.getLogger(__name__)

# Datatype -> the InferTensorContents field carrying it, and that field's numpy dtype. Narrow
# integers share a 32-bit field; FP16 has none and travels raw only.
TYPED_FIELDS: dict[str, tuple[str, np.dtype]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(object)),
}
CONTENTS_FIELDS = tuple(f.name for f in pb.InferTensorContents.DESCRIPTOR.fields)


def parse_version(text: str) -> int | None:
    """A request's model_version: empty for the default; an integer, as OVMS requires."""
    if not text:
        return None
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise ModelVersionInvalidFormat(f"model_version is '{text}'; expected an integer such as '1'")
    version = int(text)
    if version < 1:
        raise ModelVersionNotFound(f"version {version}; versions are positive integers")
    return version


def decode_request(request: pb.ModelInferRequest) -> InferRequest:
    if not request.inputs:
        raise MalformedRequest("the request has no inputs; expected at least one input tensor")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise MalformedRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "expected one per input, in the order of 'inputs'"
        )
    inputs = {}
    for index, tensor in enumerate(request.inputs):
        if tensor.name in inputs:
            raise MalformedRequest(f"input '{tensor.name}' is given twice")
        inputs[tensor.name] = _decode_input(tensor, raw[index] if raw else None)
    return InferRequest(
        model_name=request.model_name,
        version=parse_version(request.model_version),
        inputs=inputs,
        outputs=[RequestedOutput(o.name) for o in request.outputs],
        id=request.id or None,
    )


def _decode_input(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    dtype_of(datatype)  # an unknown datatype is named before anything else
    shape = checked_shape(list(tensor.shape), f"input '{name}'")
    if raw is not None:
        if tensor.HasField("contents"):
            raise MalformedRequest(
                f"input '{name}' has typed contents, and the request has raw_input_contents; use one or the other"
            )
        return from_raw(raw, shape, datatype, name)
    return _from_contents(tensor.contents, shape, datatype, name)


def _from_contents(contents: pb.InferTensorContents, shape: tuple[int, ...], datatype: str, name: str) -> np.ndarray:
    if datatype not in TYPED_FIELDS:
        raise MalformedRequest(
            f"input '{name}' is {datatype}, which has no typed contents field; send it in raw_input_contents"
        )
    field, field_dtype = TYPED_FIELDS[datatype]
    others = [f for f in CONTENTS_FIELDS if f != field and len(getattr(contents, f))]
    if others:
        raise MalformedRequest(
            f"input '{name}' is {datatype}, whose values go in contents.{field}; "
            f"the request filled contents.{others[0]}"
        )
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidContentSize(
            f"input '{name}': {len(values)} values in contents.{field}; expected {count} for shape {list(shape)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    array = np.array(values, dtype=field_dtype)
    target = dtype_of(datatype)
    if target != field_dtype:
        check_range(array, datatype, name)
        array = array.astype(target)
    return array.reshape(shape)


def encode_response(response: InferResponse) -> pb.ModelInferResponse:
    reply = pb.ModelInferResponse(
        model_name=response.model_name, model_version=str(response.model_version), id=response.id or ""
    )
    for name, array in response.outputs.items():
        reply.outputs.add(name=name, datatype=datatype_of(array), shape=array.shape)
        reply.raw_output_contents.append(to_raw(array))
    return reply


def metadata_response(metadata: dict) -> pb.ModelMetadataResponse:
    """DataPlane metadata (REST's JSON body) as its proto."""
    return pb.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in metadata["inputs"]],
        outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in metadata["outputs"]],
    )


class GrpcContext(Protocol):
    """What the RPCs need of Ray Serve's RayServegRPCContext."""

    def set_code(self, code: grpc.StatusCode) -> None: ...

    def set_details(self, details: str) -> None: ...


Reply = TypeVar("Reply", bound=Message)


def error_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and details a failed RPC answers: the table in app/errors.py for ours,
    INTERNAL for anything else (a replica's ServingError may arrive wrapped by Ray)."""
    known = find_serving_error(exc)
    if known is not None:
        return grpc.StatusCode[grpc_status(known)], known.message
    log.error("unexpected error while serving a gRPC request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"Internal server error - {fault_summary(exc)}"


async def _reply(context: GrpcContext | None, empty: Reply, work: Awaitable[Reply]) -> Reply:
    """``work``'s reply; on failure, the status set on ``context`` and an empty reply (Serve sends
    the status; raising instead would log every client error as a server fault)."""
    try:
        return await work
    except Exception as exc:
        if context is None:
            raise
        code, details = error_status(exc)
        context.set_code(code)
        context.set_details(details)
        return empty


NOT_READY = (ModelVersionNotLoadedYet, ModelVersionNotLoadedAnymore, PipelineNotLoadedYet)


class KServeGrpcMethods:
    """The RPCs of ``inference.GRPCInferenceService``, mixed into the ingress deployment.

    Expects ``self.dataplane`` (DataPlane) and ``self.metrics`` (ServingMetrics or None), and
    honours ``self.max_request_bytes`` if the class has it. Ray Serve passes ``grpc_context``
    by that name; without one (a direct call), errors are raised instead.
    """

    dataplane: DataPlane
    metrics: ServingMetrics | None

    async def ServerLive(
        self, request: pb.ServerLiveRequest, grpc_context: GrpcContext | None = None
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, grpc_context: GrpcContext | None = None
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready)  # as REST's /v2/health/ready

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, grpc_context: GrpcContext | None = None
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, grpc_context: GrpcContext | None = None
    ) -> pb.ModelReadyResponse:
        return await _reply(grpc_context, pb.ModelReadyResponse(), self._model_ready(request))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, grpc_context: GrpcContext | None = None
    ) -> pb.ModelMetadataResponse:
        return await _reply(grpc_context, pb.ModelMetadataResponse(), self._model_metadata(request))

    async def ModelInfer(
        self, request: pb.ModelInferRequest, grpc_context: GrpcContext | None = None
    ) -> pb.ModelInferResponse:
        return await _reply(grpc_context, pb.ModelInferResponse(), self._model_infer(request))

    async def _model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        # As OVMS over gRPC: an unknown model or version is NOT_FOUND, a known one not (or no
        # longer) AVAILABLE is ready=false. REST answers 404 for both.
        with self._counted("ModelReady", request.name, request.version):
            try:
                await self.dataplane.model_ready(request.name, parse_version(request.version))
            except NOT_READY:
                return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def _model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        with self._counted("ModelMetadata", request.name, request.version):
            return metadata_response(await self.dataplane.metadata(request.name, parse_version(request.version)))

    async def _model_infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        name = request.model_name
        self.dataplane.servable(name)  # an unknown model is NOT_FOUND whatever the request holds
        with self._counted("ModelInfer", name, request.model_version) as outcome:
            limit = getattr(self, "max_request_bytes", None)
            if limit is not None and request.ByteSize() > limit:
                raise RequestTooLarge(f"request of {request.ByteSize()} bytes exceeds the limit of {limit} bytes")
            response = await self.dataplane.infer(decode_request(request))
            outcome["version"] = str(response.model_version)
        if self.metrics is not None:
            self.metrics.inference_time(name, outcome["version"], response.inference_us)
        return encode_response(response)

    def _counted(self, method: str, model: str, version: str):
        # As REST: only servables that exist are counted, so clients cannot grow the label set.
        if self.metrics is None or model not in self.dataplane.servables:
            return nullcontext({"version": version})
        return self.metrics.request(method, model, self.dataplane.version_label(model, version or None), interface=GRPC)


# --- registering the service ---------------------------------------------------------------


class Unparsed:
    """A request message that did not parse; its RPC answers INVALID_ARGUMENT instead of running."""

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type


def add_inference_service(servicer: object, server: grpc.aio.Server) -> None:
    """Register ``inference.GRPCInferenceService`` as the generated ``add_..._to_server`` does, except
    that a message that does not parse answers INVALID_ARGUMENT naming its type (grpcio's own
    answer is UNKNOWN with the parser's exception class)."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            _parsed_first(getattr(servicer, method.name)),
            request_deserializer=_tolerant(getattr(pb, method.input_type.name)),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def _tolerant(message_type: type[Message]) -> Callable[[bytes], Message | Unparsed]:
    def parse(data: bytes) -> Message | Unparsed:
        try:
            return message_type.FromString(data)
        except DecodeError:
            return Unparsed(message_type.DESCRIPTOR.full_name)

    return parse


def _parsed_first(rpc: Callable[..., Awaitable[Message]]) -> Callable[..., Awaitable[Message]]:
    async def handle(request: Message | Unparsed, context: grpc.aio.ServicerContext) -> Message:
        if isinstance(request, Unparsed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {request.message_type}")
        return await rpc(request, context)

    return handle
