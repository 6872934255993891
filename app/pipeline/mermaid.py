"""A pipeline as a Mermaid flowchart: request, nodes, response; demultiplexers and gathers marked.

Drawn from the config alone (no models needed), so it works for a pipeline that does not
validate too. Each edge is labelled with the data item it carries and, when it differs, the
input it feeds (``alias → input``).
"""

from __future__ import annotations

from app.config import ModelNode, PipelineConfig, PipelineNode
from app.pipeline.definition import REQUEST, RESPONSE


def to_mermaid(pipeline: PipelineConfig) -> str:
    ids = {REQUEST: "request", RESPONSE: "response"}
    ids.update({node.name: f"n{index}" for index, node in enumerate(pipeline.nodes)})
    lines = ["flowchart TD", f"  %% pipeline {_text(pipeline.name)}"]
    lines.append(f'  request(["{_request_label(pipeline)}"])')
    lines += [f"  {ids[node.name]}{_shape(node)}" for node in pipeline.nodes]
    lines.append('  response(["response"])')
    for node in pipeline.nodes:
        for item in node.inputs:
            for input_name, source in item.items():
                lines.append(_edge(ids, source.node_name, source.data_item, input_name, node.name))
    for item in pipeline.outputs:
        for output_name, source in item.items():
            lines.append(_edge(ids, source.node_name, source.data_item, output_name, RESPONSE))
    return "\n".join(lines) + "\n"


def _request_label(pipeline: PipelineConfig) -> str:
    if pipeline.demultiply_count is None:
        return "request"
    return f"request<br/>demultiplexer: {_count(pipeline.demultiply_count)}"


def _shape(node: PipelineNode) -> str:
    what = (
        f"model: {node.model_name}" + (f" v{node.version}" if node.version else "")
        if isinstance(node, ModelNode)
        else f"custom: {node.library_name}"
    )
    parts = [f"<b>{_text(node.name)}</b>", _text(what)]
    if node.gather_from_node is not None:
        parts.append(f"gathers from {_text(node.gather_from_node)}")
    if node.demultiply_count is not None:
        parts.append(f"demultiplexer: {_count(node.demultiply_count)}")
        return '{{"' + "<br/>".join(parts) + '"}}'  # a hexagon: it fans out into shards
    if node.gather_from_node is not None:
        return '[/"' + "<br/>".join(parts) + '"\\]'  # a trapezoid: shards come together
    return '["' + "<br/>".join(parts) + '"]'


def _edge(ids: dict[str, str], source: str, alias: str, input_name: str, target: str) -> str:
    label = alias if alias == input_name else f"{alias} → {input_name}"
    start = ids.get(source, _missing(source))
    end = ids.get(target, _missing(target))
    return f'  {start} -- "{_text(label)}" --> {end}'


def _missing(name: str) -> str:
    # A source that is not a node still gets drawn, so a broken pipeline can be looked at.
    return f'missing_{"".join(c if c.isalnum() else "_" for c in name)}["{_text(name)} (missing)"]'


def _count(count: int) -> str:
    return "dynamic" if count < 0 else str(count)


def _text(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
