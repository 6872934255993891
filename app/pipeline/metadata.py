"""Step 6 of validation: the pipeline's inputs and outputs as KServe metadata reports them.

- An input takes what its consumers need; several consumers give the intersection
  (PIPELINE_INPUTS_AMBIGUOUS_METADATA when there is none). An input that feeds only the response
  is unspecified: OVMS reports datatype UNDEFINED and shape [], and accepts anything.
- An entry demultiplexer prepends its count (-1 if dynamic) to the inputs.
- An output is its source's output as one shard gives it, with the count of every demultiplexer
  still open at the response prepended (-1 if dynamic): the response gathers them.
- A 2-D UINT8 output whose response name ends in ``_string`` is reported as BYTES, one per row.
"""

from __future__ import annotations

from app.pipeline.definition import REQUEST, RESPONSE, Fail, PipelineDefinition
from app.pipeline.shapes import count_dim, intersect_shapes
from app.tensors import Dim, TensorInfo, format_shape

UNSPECIFIED = "UNDEFINED"
STRING_SUFFIX = "_string"


def unspecified(name: str) -> TensorInfo:
    return TensorInfo(name, UNSPECIFIED, ())


def is_unspecified(info: TensorInfo) -> bool:
    return info.datatype == UNSPECIFIED


def pipeline_inputs(definition: PipelineDefinition, fail: Fail) -> tuple[TensorInfo, ...]:
    """The inputs some connection reads, as OVMS builds them from the connections: one listed in
    ``inputs`` that nothing reads is not an input of the pipeline."""
    used = {c.alias for c in definition.connections if c.source == REQUEST}
    return tuple(_input(definition, name, fail) for name in definition.config.inputs if name in used)


def _input(definition: PipelineDefinition, name: str, fail: Fail) -> TensorInfo:
    entry = definition.entry_demultiply_count
    result: TensorInfo | None = None
    first = ""
    for connection in definition.connections:
        if connection.source != REQUEST or connection.alias != name or connection.target == RESPONSE:
            continue
        needed = definition.needed(connection)
        shape = needed.shape
        if entry is not None and definition.nodes[connection.target].gather_from_node != REQUEST:
            shape = (count_dim(entry),) + shape  # the request holds every shard
        info = TensorInfo(name, needed.datatype, shape)
        where = f"node '{connection.target}' input '{connection.input}'"
        if result is None:
            result, first = info, where
            continue
        common = intersect_shapes(result.shape, info.shape)
        if common is None or info.datatype != result.datatype:
            fail(
                "PIPELINE_INPUTS_AMBIGUOUS_METADATA",
                f"pipeline input '{name}' feeds {first} needing {result.datatype} {format_shape(result.shape)} "
                f"and {where} needing {info.datatype} {format_shape(info.shape)}; expected needs that a "
                "tensor can meet at once",
            )
        result = TensorInfo(name, result.datatype, common)
    return result or unspecified(name)


def pipeline_outputs(definition: PipelineDefinition) -> tuple[TensorInfo, ...]:
    inputs = {info.name: info for info in definition.inputs}
    outputs = []
    for connection in definition.into(RESPONSE):
        if connection.source == REQUEST:
            outputs.append(
                TensorInfo(connection.input, inputs[connection.alias].datatype, inputs[connection.alias].shape)
            )
            continue
        produced = definition.produced(connection)
        shape = produced.shape[1:] if definition.demultiply_count(connection.source) is not None else produced.shape
        gathered = tuple(_gathered_dim(definition, d) for d in definition.output_level(connection.source))
        outputs.append(as_string_output(TensorInfo(connection.input, produced.datatype, gathered + shape)))
    return tuple(outputs)


def _gathered_dim(definition: PipelineDefinition, demultiplexer: str) -> Dim:
    """The dim gathering ``demultiplexer``'s shards adds: its count; if dynamic, the dim 0 its
    outputs declare when they all declare the same fixed one (as OVMS reports it), else -1."""
    count = definition.demultiply_count(demultiplexer)
    if count is not None and count >= 0 or demultiplexer not in definition.signatures:
        return count_dim(count)
    declared = {info.shape[0] for info in definition.signatures[demultiplexer].outputs if info.shape}
    fixed = [dim for dim in declared if isinstance(dim, int) and dim > 0]
    return fixed[0] if len(declared) == 1 and fixed else -1


def as_string_output(info: TensorInfo) -> TensorInfo:
    if info.name.endswith(STRING_SUFFIX) and info.datatype == "UINT8" and len(info.shape) == 2:
        return TensorInfo(info.name, "BYTES", info.shape[:1])
    return info
