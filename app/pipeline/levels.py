"""Steps 4 and 5 of validation: the graph has no cycle and no stray node, and shards nest properly.

A node's *level* is the stack of demultiplexers whose shards it runs in, outermost first. A
demultiplexer pushes itself on its outputs' level; a gather node pops the demultiplexer it names,
which must be the innermost one (LIFO); every input of a node, the response included, must come at
the same level.
"""

from __future__ import annotations

from app.config import PipelineConfig
from app.pipeline.definition import REQUEST, RESPONSE, Connection, Fail

Level = tuple[str, ...]


def check_graph(config: PipelineConfig, connections: list[Connection], fail: Fail) -> tuple[str, ...]:
    """Fail on a cycle or a node the response does not depend on; else the topological order."""
    sources: dict[str, list[str]] = {}
    for c in connections:
        sources.setdefault(c.target, []).append(c.source)
    reached = _reach_from_response(sources, fail)
    unconnected = [node.name for node in config.nodes if node.name not in reached]
    if unconnected:
        fail(
            "PIPELINE_CONTAINS_UNCONNECTED_NODES",
            f"nodes {unconnected} do not lead to the response; connect their outputs or remove them",
        )
    return _topological(sources, [REQUEST, *(n.name for n in config.nodes), RESPONSE])


def _reach_from_response(sources: dict[str, list[str]], fail: Fail) -> set[str]:
    """Depth-first from the response over reversed edges, as OVMS does; a node met on its own path is a cycle."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> None:
        if node in path:
            cycle = path[path.index(node) :] + [node]
            fail("PIPELINE_CYCLE_FOUND", f"nodes form a cycle: {' <- '.join(cycle)}; a pipeline must be acyclic")
        if node in done:
            return
        path.append(node)
        for source in sources.get(node, []):
            visit(source)
        path.pop()
        done.add(node)

    visit(RESPONSE)
    return done


def _topological(sources: dict[str, list[str]], names: list[str]) -> tuple[str, ...]:
    order: list[str] = []
    placed: set[str] = set()

    def place(node: str) -> None:
        if node in placed:
            return
        placed.add(node)
        for source in sources.get(node, []):
            place(source)
        order.append(node)

    for name in names:
        place(name)
    return tuple(order)


def demultiply_levels(
    config: PipelineConfig, connections: list[Connection], order: tuple[str, ...], fail: Fail
) -> dict[str, Level]:
    """The level each node runs at, failing where demultiplexers and gathers do not nest (LIFO)."""
    nodes = {node.name: node for node in config.nodes}
    levels: dict[str, Level] = {REQUEST: ()}
    out: dict[str, Level] = {REQUEST: (REQUEST,) if config.demultiply_count is not None else ()}
    for name in order[1:]:
        incoming = {c.describe(): out[c.source] for c in connections if c.target == name}
        level = _common(name, incoming, fail)
        gather = nodes[name].gather_from_node if name in nodes else None
        if gather is not None:
            if not level or level[-1] != gather:
                fail(
                    "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
                    f"node '{name}' gathers from '{gather}' but its inputs come in the shards of "
                    f"{list(level) or 'no demultiplexer'}; expected '{gather}' to be the innermost demultiplexer",
                )
            level = level[:-1]
        levels[name] = level
        out[name] = level + (name,) if name in nodes and nodes[name].demultiply_count is not None else level
    return levels


def _common(name: str, incoming: dict[str, Level], fail: Fail) -> Level:
    distinct = set(incoming.values())
    if len(distinct) > 1:
        detail = "; ".join(f"{edge} in shards of {list(level) or 'none'}" for edge, level in incoming.items())
        fail(
            "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
            f"node '{name}' gets inputs from different demultiply levels ({detail}); expected every input "
            "from the same demultiplexers, gathered in reverse order of demultiplexing",
        )
    return next(iter(distinct), ())
