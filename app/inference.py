"""Wire-free inference request and response: what every protocol decodes into and encodes from."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.tensors import Tensors


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: the request's binary_data_output default applies


@dataclass
class InferRequest:
    model_name: str
    version: int | None  # None: the default version
    inputs: Tensors
    outputs: list[RequestedOutput] = field(default_factory=list)  # empty: every output
    id: str | None = None
    binary_outputs: bool = False  # the request-level binary_data_output parameter

    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]


@dataclass
class InferResponse:
    model_name: str
    model_version: int
    outputs: Tensors
    id: str | None = None
    inference_us: float | None = None  # time in OpenVINO, for ovms_inference_time_us
