"""One initialized custom node held by a process: what a node deployment's replica holds, and
what a pipeline replica holds for each node it runs inline. No Ray.

``initialize`` runs once, here. A failure is kept and raised by every later call, so the process
stays up and the pipeline using the node reports why it is not ready while the rest of the
config serves. ``run`` and the metadata calls go to a worker thread: C ``execute`` is
synchronous, and the event loop must stay free for health checks and other requests (the
node's lock may be held by a running execute). ``close`` deinitializes once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from app.errors import ServingError
from app.tensors import TensorInfo, Tensors
from nodes.base import Node
from nodes.errors import NodeCrashed, NodeInitializeFailed

log = logging.getLogger(__name__)

NodeFactory = Callable[[], Node]


class HostedNode:
    def __init__(self, factory: NodeFactory, params: dict[str, str], node_name: str) -> None:
        self.name = node_name
        self.error: ServingError | None = None
        self.crashed = False  # its library crashed in this process, which is not to be trusted again
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
        try:
            return await asyncio.to_thread(self.node().run, inputs, outputs)
        except NodeCrashed:
            self.crashed = True
            raise

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
