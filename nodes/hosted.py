"""One initialized custom node held by a process: what a node deployment's replica holds, and
what a pipeline replica holds for each node it runs inline. No Ray.

``initialize`` runs once, here. A failure is kept and raised by every later call, so the process
stays up and the pipeline using the node reports why it is not ready while the rest of the
config serves. ``run`` and the metadata calls go to a worker thread: C ``execute`` is
synchronous, and the event loop must stay free for health checks and other requests (the
node's lock may be held by a running execute). ``close`` deinitializes once.

A C node whose library crashes raises NodeCrashed for that call and every later one, and the
process stays up to answer it; ``crashed`` (or ``nodes.library.crash_report`` for every node of
the process) tells its health check that the process is to be replaced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from app.errors import ServingError
from app.tensors import TensorInfo, Tensors
from nodes.base import Node
from nodes.errors import NodeCrashed, NodeInitializeFailed
from nodes.library import LibraryNode

log = logging.getLogger(__name__)

NodeFactory = Callable[[], Node]


class HostedNode:
    def __init__(self, factory: NodeFactory, params: dict[str, str], node_name: str) -> None:
        self.name = node_name
        self.error: ServingError | None = None
        self._node: Node | None = None
        node = factory()
        node.name = node_name
        try:
            node.initialize(dict(params))
        except ServingError as exc:
            self.error = exc
        except Exception as exc:  # a Python node's initialize is user code
            self.error = NodeInitializeFailed(node_name, f"{type(exc).__name__}: {exc}")
        if self.error is not None:
            log.error("node %s: %s", node_name, self.error.message)
            return
        self._node = node

    async def inputs_info(self) -> list[TensorInfo]:
        return await asyncio.to_thread(self.node().inputs_info)

    async def outputs_info(self) -> list[TensorInfo]:
        return await asyncio.to_thread(self.node().outputs_info)

    async def run(self, inputs: Tensors, outputs: Collection[str]) -> Tensors:
        return await asyncio.to_thread(self.node().run, inputs, outputs)

    @property
    def crashed(self) -> bool:
        """Whether the node's C library crashed in this process (its initialize included)."""
        node = self._node
        return isinstance(self.error, NodeCrashed) or (isinstance(node, LibraryNode) and node.crashed)

    def node(self) -> Node:
        """The initialized node, or the error its ``initialize`` raised."""
        if self.error is not None:
            raise self.error
        assert self._node is not None
        return self._node

    def close(self) -> None:
        """Deinitialize, once; nothing to do when ``initialize`` failed."""
        node, self._node = self._node, None
        if node is not None:
            node.deinitialize()
