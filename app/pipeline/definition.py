"""A validated pipeline: its nodes, connections, order and demultiply levels, ready to run.

Built only by ``app.pipeline.validation.validate``. ``NodeSpec`` is also what the executor hands
to ``call(spec, inputs)``: it says which model version or which library with which params to run,
and which real outputs the pipeline needs from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from app.config import PipelineConfig, PipelineNode
from app.pipeline.catalog import Signature
from app.tensors import TensorInfo

REQUEST = "request"
RESPONSE = "response"

# Raises PipelineInvalid(pipeline, code, detail): how validation steps report a broken rule.
Fail = Callable[[str, str], NoReturn]


@dataclass(frozen=True)
class NodeSpec:
    """One node of a pipeline, as ``call`` receives it.

    ``node`` is its config: a ``ModelNode`` (model name and version) or a ``CustomNode`` (library
    and params). ``inputs`` given to ``call`` are keyed by the real input names of the model or
    library; ``call`` returns a dict keyed by real output names, holding at least ``outputs``.
    """

    pipeline: str
    node: PipelineNode
    outputs: tuple[str, ...] = ()  # real output names the pipeline uses

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def demultiply_count(self) -> int | None:
        """None: not a demultiplexer; -1: dynamic."""
        return self.node.demultiply_count

    @property
    def gather_from_node(self) -> str | None:
        return self.node.gather_from_node

    @property
    def is_demultiplexer(self) -> bool:
        return self.demultiply_count is not None

    @property
    def target(self) -> str:
        """What the node runs, for messages: ``model 'dummy'`` or ``library 'add_sub'``."""
        return self.node.target


@dataclass(frozen=True)
class Connection:
    """One edge: ``source``'s output ``alias`` (real name ``output``) feeds ``target``'s input ``input``.

    For the request, ``alias`` and ``output`` are the pipeline input name; for the response,
    ``input`` is the response tensor name.
    """

    source: str
    alias: str
    output: str
    target: str
    input: str

    def describe(self) -> str:
        return f"{self.source}:{self.alias} -> {self.target}:{self.input}"


@dataclass(frozen=True)
class PipelineDefinition:
    name: str
    config: PipelineConfig
    nodes: Mapping[str, NodeSpec]  # without request and response
    signatures: Mapping[str, Signature]
    connections: tuple[Connection, ...]
    order: tuple[str, ...]  # topological, request first and response last
    levels: Mapping[str, tuple[str, ...]]  # the demultiplexers whose shards a node runs in, outermost first
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @property
    def entry_demultiply_count(self) -> int | None:
        return self.config.demultiply_count

    def demultiply_count(self, node: str) -> int | None:
        """The node's demultiply count (None: not a demultiplexer); the request's is the entry one."""
        if node == REQUEST:
            return self.entry_demultiply_count
        spec = self.nodes.get(node)
        return spec.demultiply_count if spec else None

    def output_level(self, node: str) -> tuple[str, ...]:
        """The level of the node's outputs: its own, plus itself if it is a demultiplexer."""
        level = self.levels[node]
        return level + (node,) if self.demultiply_count(node) is not None else level

    def into(self, target: str) -> list[Connection]:
        return [c for c in self.connections if c.target == target]

    def produced(self, connection: Connection) -> TensorInfo:
        """The output a connection from a node (not the request) takes."""
        info = self.signatures[connection.source].output(connection.output)
        assert info is not None  # validation keeps no connection from an output the node lacks
        return info

    def needed(self, connection: Connection) -> TensorInfo:
        """The input a connection to a node (not the response) feeds."""
        info = self.signatures[connection.target].input(connection.input)
        assert info is not None  # validation keeps no connection to an input the node lacks
        return info

    def metadata(self) -> dict:
        """KServe v2 model metadata: pipelines have one version, "1", as in OVMS."""
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "OpenVINO",
            "inputs": [info.metadata() for info in self.inputs],
            "outputs": [info.metadata() for info in self.outputs],
        }
