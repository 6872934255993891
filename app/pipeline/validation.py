"""Validate a pipeline as OVMS does (pipelinedefinition.cpp::validate), in its order and with its codes.

``validate(config, catalog)`` returns a ``PipelineDefinition`` or raises ``PipelineInvalid``
whose ``code`` is OVMS's status name and whose message names the pipeline, the node and the
connection, and says what was expected. The steps:

1. the name is not a model's (PIPELINE_NAME_OCCUPIED: the pipeline is then not registered);
2. every custom node's library is known and initializes;
3. structure, then each node's model or library, demultiplexer and gather settings, then each
   connection (app/pipeline/connections.py);
4. no cycle, no node the response does not depend on;
5. demultiplexers and gathers in LIFO order (app/pipeline/levels.py);
6. the pipeline's inputs and outputs metadata (app/pipeline/metadata.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import NoReturn

from app.config import CustomNode, PipelineConfig, PipelineNode
from app.pipeline import catalog as codes
from app.pipeline.catalog import Catalog, CatalogError, Signature
from app.pipeline.connections import check_connections
from app.pipeline.definition import REQUEST, RESPONSE, Connection, Fail, NodeSpec, PipelineDefinition
from app.pipeline.errors import PipelineInvalid, PipelineNameOccupied
from app.pipeline.levels import check_graph, demultiply_levels
from app.pipeline.metadata import pipeline_inputs, pipeline_outputs
from app.tensors import dim_fits, format_shape


def validate(config: PipelineConfig, catalog: Catalog) -> PipelineDefinition:
    """The validated pipeline, or PipelineInvalid naming the rule it breaks."""
    if catalog.has_model(config.name):
        raise PipelineNameOccupied(config.name, f"model '{config.name}' already has this name; rename the pipeline")
    fail = _failer(config.name)
    pending = _initialize_libraries(config, catalog, fail)
    _check_structure(config, fail)
    signatures = {node.name: _signature(node, catalog, pending, fail) for node in config.nodes}
    for node in config.nodes:
        _check_demultiplexer(node, signatures[node.name], fail)
        _check_gather(config, node, fail)
    connections = check_connections(config, signatures, fail)
    order = check_graph(config, connections, fail)
    levels = demultiply_levels(config, connections, order, fail)
    draft = PipelineDefinition(
        name=config.name,
        config=config,
        nodes=_specs(config, connections),
        signatures=signatures,
        connections=tuple(connections),
        order=order,
        levels=levels,
        inputs=(),
        outputs=(),
    )
    with_inputs = replace(draft, inputs=pipeline_inputs(draft, fail))
    return replace(with_inputs, outputs=pipeline_outputs(with_inputs))  # a pass-through output is its input


def validate_all(
    pipelines: Iterable[PipelineConfig], catalog: Catalog
) -> dict[str, PipelineDefinition | PipelineInvalid]:
    """Every pipeline of a config by name: its definition or its error. The first of a repeated name
    wins, and a pipeline named like a model is left out, as in OVMS."""
    results: dict[str, PipelineDefinition | PipelineInvalid] = {}
    for config in pipelines:
        if config.name in results:
            continue
        try:
            results[config.name] = validate(config, catalog)
        except PipelineNameOccupied:
            continue
        except PipelineInvalid as exc:
            results[config.name] = exc
    return results


def _failer(pipeline: str) -> Fail:
    def fail(code: str, detail: str) -> NoReturn:
        raise PipelineInvalid(pipeline, code, detail)

    return fail


# --- step 2: libraries -------------------------------------------------------------------------


def _initialize_libraries(config: PipelineConfig, catalog: Catalog, fail: Fail) -> dict[str, Signature | CatalogError]:
    """Each custom node's signature, failing on a library that is unknown or does not initialize."""
    answers: dict[str, Signature | CatalogError] = {}
    for node in config.nodes:
        if not isinstance(node, CustomNode):
            continue
        try:
            answers[node.name] = catalog.node_signature(node.library_name, node.params)
        except CatalogError as exc:
            if exc.code in (codes.INVALID_NODE_LIBRARY, codes.INITIALIZE_FAILED):
                fail(exc.code, f"node '{node.name}' uses library '{node.library_name}': {exc.reason}")
            answers[node.name] = exc  # a metadata failure is reported with the node checks, as in OVMS
    return answers


# --- step 3: structure, nodes --------------------------------------------------------------------


def _check_structure(config: PipelineConfig, fail: Fail) -> None:
    for node in config.nodes:
        if node.name == REQUEST:
            fail("PIPELINE_MULTIPLE_ENTRY_NODES", f"node '{REQUEST}' is reserved for the entry node; rename it")
        if node.name == RESPONSE:
            fail("PIPELINE_MULTIPLE_EXIT_NODES", f"node '{RESPONSE}' is reserved for the exit node; rename it")
    demultiplexers = [n.name for n in config.nodes if n.demultiply_count is not None]
    if config.demultiply_count is not None:
        demultiplexers.insert(0, REQUEST)
    dynamic = [n.name for n in config.nodes if n.demultiply_count == -1]
    if config.demultiply_count == -1:
        dynamic.insert(0, REQUEST)
    if dynamic and len(demultiplexers) > 1:
        fail(
            "NOT_IMPLEMENTED",
            f"dynamic demultiplexer '{dynamic[0]}' is used with other demultiplexers "
            f"{[d for d in demultiplexers if d != dynamic[0]]}; a pipeline with a dynamic "
            "demultiplexer may have no other demultiplexer",
        )
    seen: set[str] = set()
    for node in config.nodes:
        if node.name in seen:
            fail("PIPELINE_NODE_NAME_DUPLICATE", f"node name '{node.name}' is used twice; expected unique node names")
        seen.add(node.name)


def _signature(
    node: PipelineNode, catalog: Catalog, pending: dict[str, Signature | CatalogError], fail: Fail
) -> Signature:
    if isinstance(node, CustomNode):
        answer = pending[node.name]
        if isinstance(answer, CatalogError):
            fail(answer.code, f"node '{node.name}' uses library '{node.library_name}': {answer.reason}")
        return answer
    try:
        return catalog.model_signature(node.model_name, node.version)
    except CatalogError as exc:
        version = f" version {node.version}" if node.version else ""
        fail(exc.code, f"node '{node.name}' refers to model '{node.model_name}'{version}: {exc.reason}")


def _check_demultiplexer(node: PipelineNode, signature: Signature, fail: Fail) -> None:
    count = node.demultiply_count
    if count is None:
        return
    for info in signature.outputs:
        if len(info.shape) < 3:
            fail(
                "PIPELINE_NOT_ENOUGH_SHAPE_DIMENSIONS_TO_DEMULTIPLY",
                f"demultiplexer node '{node.name}' output '{info.name}' has shape {format_shape(info.shape)}; "
                "expected at least 3 dims, [shards, 1, ...]",
            )
        if count > 0 and not dim_fits(info.shape[0], count):
            fail(
                "PIPELINE_DEMULTIPLY_COUNT_DOES_NOT_MATCH_TENSOR_SHARD_COUNT",
                f"demultiplexer node '{node.name}' has demultiply_count {count} but output '{info.name}' has "
                f"shape {format_shape(info.shape)}; expected dim0 {count} or dynamic",
            )


def _check_gather(config: PipelineConfig, node: PipelineNode, fail: Fail) -> None:
    source = node.gather_from_node
    if source is None:
        return
    names = {n.name: n for n in config.nodes}
    if source != REQUEST and source not in names:
        fail(
            "PIPELINE_NODE_GATHER_FROM_NOT_EXISTING_NODE",
            f"node '{node.name}' gathers from '{source}', which is not a node; expected one of {sorted(names)}",
        )
    count = config.demultiply_count if source == REQUEST else names[source].demultiply_count
    if count is None:
        fail(
            "PIPELINE_NODE_GATHER_FROM_NOT_DEMULTIPLEXER",
            f"node '{node.name}' gathers from '{source}', which is not a demultiplexer; "
            f"expected a node with demultiply_count",
        )


def _specs(config: PipelineConfig, connections: list[Connection]) -> dict[str, NodeSpec]:
    used: dict[str, set[str]] = {}
    for connection in connections:
        used.setdefault(connection.source, set()).add(connection.output)
    specs = {}
    for node in config.nodes:
        outputs = tuple(dict.fromkeys(o.data_item for o in node.outputs if o.data_item in used.get(node.name, ())))
        specs[node.name] = NodeSpec(pipeline=config.name, node=node, outputs=outputs)
    return specs
