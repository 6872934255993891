"""Step 3 of validation, connections: each node input and each pipeline output, checked against metadata.

For each node (in config order), each of its inputs: the source node exists and is not the
response, declares the alias, the alias names a real output, the target input exists and is fed
once, and shapes overlap and precisions match (dim0 stripped for a demultiplexer source and a
gather target). Then every input of the node must be fed. The pipeline outputs come last.
"""

from __future__ import annotations

from app.config import PipelineConfig, PipelineNode
from app.pipeline.catalog import Signature
from app.pipeline.definition import REQUEST, RESPONSE, Connection, Fail
from app.pipeline.shapes import shapes_overlap
from app.tensors import TensorInfo, format_shape


def check_connections(config: PipelineConfig, signatures: dict[str, Signature], fail: Fail) -> list[Connection]:
    nodes = {node.name: node for node in config.nodes}
    connections: list[Connection] = []
    for node in config.nodes:
        fed: dict[str, str] = {}
        for item in node.inputs:
            for input_name, source in item.items():
                connection = _connect(config, nodes, source.node_name, source.data_item, node.name, input_name, fail)
                where = f"node '{node.name}' input '{input_name}' (connection {connection.describe()})"
                produced = _check_output(nodes, signatures, connection, where, fail)
                wanted = signatures[node.name].input(input_name)
                if wanted is None:
                    expected = [info.name for info in signatures[node.name].inputs]
                    fail(
                        "PIPELINE_CONNECTION_TO_MISSING_MODEL_INPUT",
                        f"{where}: {node.target} has no input '{input_name}'; expected one of {expected}",
                    )
                if input_name in fed:
                    fail(
                        "PIPELINE_NODE_CONNECTED_TO_MULTIPLE_DATA_SOURCES",
                        f"{where}: the input is already fed by {fed[input_name]}; expected one source per input",
                    )
                fed[input_name] = connection.describe()
                if produced is not None:  # the request has no metadata of its own: it takes what its consumers need
                    _check_tensors(nodes, connection, produced, wanted, where, fail)
                connections.append(connection)
        missing = [info.name for info in signatures[node.name].inputs if info.name not in fed]
        if missing:
            fail(
                "PIPELINE_NOT_ALL_INPUTS_CONNECTED",
                f"node '{node.name}' ({node.target}) has inputs {missing} fed by no connection; "
                "expected every input to be connected",
            )
    for item in config.outputs:
        for response_name, source in item.items():
            connection = _connect(config, nodes, source.node_name, source.data_item, RESPONSE, response_name, fail)
            _check_output(
                nodes,
                signatures,
                connection,
                f"response output '{response_name}' (connection {connection.describe()})",
                fail,
            )
            connections.append(connection)
    return connections


def _connect(
    config: PipelineConfig,
    nodes: dict[str, PipelineNode],
    source: str,
    alias: str,
    target: str,
    input_name: str,
    fail: Fail,
) -> Connection:
    """The connection, once its source exists and declares ``alias`` (real output not checked yet)."""
    where = f"{'response output' if target == RESPONSE else f'node {target!r} input'} '{input_name}'"
    if source == RESPONSE:
        fail(
            "PIPELINE_EXIT_USED_AS_NODE_DEPENDENCY",
            f"{where} takes '{alias}' from '{RESPONSE}'; the response is the exit and feeds nothing",
        )
    if source == REQUEST:
        if alias not in config.inputs:
            fail(
                "PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE",
                f"{where} takes '{alias}' from '{REQUEST}'; expected one of the pipeline inputs {config.inputs}",
            )
        return Connection(REQUEST, alias, alias, target, input_name)
    if source not in nodes:
        fail(
            "PIPELINE_NODE_REFERING_TO_MISSING_NODE",
            f"{where} takes '{alias}' from node '{source}', which does not exist; expected '{REQUEST}' or one "
            f"of {sorted(nodes)}",
        )
    aliases = {o.alias: o.data_item for o in nodes[source].outputs}
    if alias not in aliases:
        fail(
            "PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE",
            f"{where} takes '{alias}' from node '{source}', which declares no such alias; expected one of "
            f"{sorted(aliases)}",
        )
    return Connection(source, alias, aliases[alias], target, input_name)


def _check_output(
    nodes: dict[str, PipelineNode], signatures: dict[str, Signature], connection: Connection, where: str, fail: Fail
) -> TensorInfo | None:
    """The output the connection takes from its source node; None if it comes from the request."""
    if connection.source == REQUEST:
        return None
    produced = signatures[connection.source].output(connection.output)
    if produced is not None:
        return produced
    expected = [info.name for info in signatures[connection.source].outputs]
    fail(
        "PIPELINE_NODE_REFERING_TO_MISSING_MODEL_OUTPUT",
        f"{where}: alias '{connection.alias}' of node '{connection.source}' maps to output '{connection.output}', "
        f"which {nodes[connection.source].target} does not have; expected one of {expected}",
    )


def _check_tensors(
    nodes: dict[str, PipelineNode],
    connection: Connection,
    produced: TensorInfo,
    wanted: TensorInfo,
    where: str,
    fail: Fail,
) -> None:
    """Fail unless the tensor the source node ``produced`` fits what the target node's input ``wanted``."""
    source_node = nodes[connection.source]
    target = nodes[connection.target]
    given = _strip(produced, source_node.demultiply_count is not None)
    needed = _strip(wanted, target.gather_from_node is not None)
    if not shapes_overlap(given.shape, needed.shape):
        fail(
            "INVALID_SHAPE",
            f"{where}: {source_node.target} output '{produced.name}' gives shape "
            f"{format_shape(given.shape)}{_stripped(source_node, target)}; expected "
            f"{format_shape(needed.shape)}, as {target.target} input '{wanted.name}' needs",
        )
    _check_shard_count(nodes, connection, wanted, where, fail)
    if produced.datatype == "BYTES" and wanted.datatype == "BYTES":
        fail("NOT_IMPLEMENTED", f"{where}: string to string connections are not supported")
    if produced.datatype != wanted.datatype:
        fail(
            "INVALID_PRECISION",
            f"{where}: {source_node.target} output '{produced.name}' is {produced.datatype}; "
            f"expected {wanted.datatype}, as {target.target} input '{wanted.name}' needs",
        )


def _check_shard_count(
    nodes: dict[str, PipelineNode], connection: Connection, wanted: TensorInfo, where: str, fail: Fail
) -> None:
    """A gathering input whose dim 0 is fixed must hold as many shards as its demultiplexer makes."""
    target = nodes[connection.target]
    gatherer = nodes.get(target.gather_from_node or "")
    count = gatherer.demultiply_count if gatherer is not None else None
    if count is None or count < 0 or not wanted.shape or not isinstance(wanted.shape[0], int):
        return
    if wanted.shape[0] > 0 and wanted.shape[0] != count:
        fail(
            "PIPELINE_DEMULTIPLY_COUNT_DOES_NOT_MATCH_TENSOR_SHARD_COUNT",
            f"{where}: {target.target} input '{wanted.name}' takes {wanted.shape[0]} shards in dim 0 "
            f"{format_shape(wanted.shape)}; expected {count}, the demultiply_count of '{target.gather_from_node}'",
        )


def _strip(info: TensorInfo, strip: bool) -> TensorInfo:
    """A demultiplexer's output as one shard sees it, or a gather input as one shard fills it."""
    return TensorInfo(info.name, info.datatype, info.shape[1:]) if strip else info


def _stripped(source: PipelineNode, target: PipelineNode) -> str:
    notes = []
    if source.demultiply_count is not None:
        notes.append(f"dim0 dropped: '{source.name}' demultiplexes")
    if target.gather_from_node is not None:
        notes.append(f"dim0 dropped: '{target.name}' gathers")
    return f" ({'; '.join(notes)})" if notes else ""
