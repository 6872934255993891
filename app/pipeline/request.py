"""A pipeline request's inputs checked against the pipeline's inputs metadata, and its response shaped.

As OVMS does: every input of the pipeline present and no other (400), BYTES converted where the input
takes strings or images, then datatype and shape checked with ``TensorInfo.check``. An
unspecified input (one that only feeds the response) takes anything. A name listed in the
config's ``inputs`` that no connection reads is not an input (OVMS builds the inputs from the
connections): a request need not send it, and one that does has it ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from app.errors import MissingInput, UnexpectedInput
from app.pipeline.conversions import (
    decode_images,
    is_string_output,
    strings_to_u8,
    u8_to_strings,
    wants_images,
    wants_strings,
)
from app.pipeline.definition import PipelineDefinition
from app.pipeline.metadata import is_unspecified
from app.tensors import Tensors


def check_request(definition: PipelineDefinition, inputs: Mapping[str, np.ndarray]) -> Tensors:
    """The request's inputs, converted where needed, or the 400 error that says what is wrong."""
    expected = {info.name: info for info in definition.inputs}
    for name in inputs:
        if name not in expected and name not in definition.config.inputs:  # listed, unused: ignored
            raise UnexpectedInput(f"input '{name}'; pipeline '{definition.name}' expects {sorted(expected)}")
    checked: Tensors = {}
    for name, info in expected.items():
        if name not in inputs:
            raise MissingInput(f"input '{name}' of pipeline '{definition.name}' is missing")
        checked[name] = array = _convert(definition, info, inputs[name])
        if not is_unspecified(info):
            info.check(array)
    return checked


def _convert(definition: PipelineDefinition, info, array: np.ndarray) -> np.ndarray:
    if array.dtype != object or is_unspecified(info):
        return array
    if wants_strings(info):
        return strings_to_u8(array)
    if wants_images(info, definition.entry_demultiply_count is not None):
        return decode_images(array, info)
    return array


def shape_response(outputs: Mapping[str, np.ndarray]) -> Tensors:
    """The response tensors: ``*_string`` 2-D UINT8 outputs back to BYTES, the rest as they are."""
    return {name: u8_to_strings(array) if is_string_output(name, array) else array for name, array in outputs.items()}
