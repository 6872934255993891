"""One custom node as a Ray Serve deployment, and the client that calls it. Every Ray call of
``nodes`` is in this module; the node itself (``nodes.base.Node``) knows nothing of Ray.

    app = node_app(factory, params, "crop")                # an Application, one per pipeline node
    handle = serve.run(app, ...)  # or a DeploymentHandle injected into the pipeline's deployment
    client = NodeClient(handle, "crop")
    outputs = await client.run({"image": x}, ["images"])  # NodeCrashed if the replica died

A replica owns one node: ``initialize`` once in ``__init__`` (a failure is kept and raised by
every call, so the replica stays up and the pipeline reports why it is not ready), ``run`` per request in a worker
thread (C ``execute`` is synchronous, and the replica's event loop must stay free for health
checks and other requests), ``deinitialize`` in ``__del__``, which Serve calls on graceful shutdown.
A C library that segfaults kills only its replica; Serve starts a new one, and the client turns
the dead actor into NodeCrashed (500) for the request that crashed it and any other request in
flight on that replica. Those are not retried, as in OVMS: the same input would likely crash
the new replica too. Requests sent after the crash wait in Serve's router for the new replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from app.errors import ServingError, find_serving_error
from app.logs import show_lifecycle_logs
from app.refs import resolve, to_refs
from app.tensors import TensorInfo, Tensors
from nodes.base import Node
from nodes.errors import NodeCrashed

log = logging.getLogger(__name__)

# A node is usually CPU-light and serialized, so a replica takes few requests at once; a crash
# then fails at most this many in-flight requests.
DEFAULT_MAX_ONGOING = 4


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=DEFAULT_MAX_ONGOING,
    health_check_period_s=2,  # notice a crashed replica quickly, so its replacement starts soon
    graceful_shutdown_wait_loop_s=0.2,
    graceful_shutdown_timeout_s=10,
)
class NodeDeployment:
    """One initialized node per replica; methods forward to it."""

    def __init__(self, factory: Callable[[], Node], params: dict[str, str], node_name: str) -> None:
        show_lifecycle_logs()
        node = factory()
        node.name = node_name
        self.error: ServingError | None = None
        try:
            node.initialize(params)
        except ServingError as exc:
            # Keep the replica up and report the failure on every call: the pipeline using the
            # node is then not ready with this reason, while the rest of the config serves.
            log.error("node %s: %s", node_name, exc.message)
            self.error = exc
            return
        self.node = node

    async def inputs_info(self) -> list[TensorInfo]:
        # In a thread too: the node's lock may be held by a running execute.
        return await asyncio.to_thread(self._node().inputs_info)

    async def outputs_info(self) -> list[TensorInfo]:
        return await asyncio.to_thread(self._node().outputs_info)

    async def run(self, inputs: Tensors, outputs: list[str], by_reference: bool = False) -> Tensors:
        """``by_reference`` (a pipeline's call): inputs may be object references, and large
        outputs go back as references, so the pipeline replica forwards them without a copy."""
        results = await asyncio.to_thread(self._node().run, await resolve(inputs), outputs)
        return to_refs(results) if by_reference else results

    def _node(self) -> Node:
        if self.error is not None:
            raise self.error
        return self.node

    def __del__(self) -> None:
        # Serve calls __del__ at graceful shutdown and Python may call it again at collection:
        # pop, so deinitialize runs once. No node when __init__ failed: nothing to deinitialize.
        node = self.__dict__.pop("node", None)
        if node is not None:
            node.deinitialize()


def node_app(
    factory: Callable[[], Node],
    params: dict[str, str],
    node_name: str,
    *,
    deployment_name: str | None = None,
    **options: Any,
) -> Application:
    """The deployment of one pipeline node, bound and ready for ``serve.run`` or another ``.bind``.

    ``deployment_name`` must be unique within the application (default ``node-<node_name>``);
    ``options`` override the deployment's defaults (``num_replicas``, ``ray_actor_options``...).
    """
    name = deployment_name or f"node-{node_name}"
    deployment = NodeDeployment.options(name=name, **options)  # type: ignore[attr-defined]  # Serve's decorator made it a Deployment
    return deployment.bind(factory, dict(params), node_name)


class NodeClient:
    """Calls a node deployment and names what went wrong: NodeCrashed for a dead replica, the
    node's own error (NodeExecutionFailed...) unchanged otherwise. Picklable, like its handle."""

    def __init__(self, handle: DeploymentHandle, node_name: str) -> None:
        self.handle = handle
        self.node_name = node_name

    async def run(self, inputs: Tensors, outputs: Collection[str], by_reference: bool = False) -> Tensors:
        return await self._call(self.handle.run.remote(inputs, list(outputs), by_reference))

    async def inputs_info(self) -> list[TensorInfo]:
        return await self._call(self.handle.inputs_info.remote())

    async def outputs_info(self) -> list[TensorInfo]:
        return await self._call(self.handle.outputs_info.remote())

    async def _call(self, response: Awaitable[Any]) -> Any:
        try:
            return await response
        except RayActorError as exc:  # Ray 2.60 raises its subclass ActorDiedError for a segfault
            raise NodeCrashed(
                self.node_name,
                f"its replica died while running the request ({type(exc).__name__}); "
                "Ray is restarting it, so later requests can succeed",
            ) from exc
        except Exception as exc:
            error = find_serving_error(exc)
            if error is None:
                raise
            raise error from exc
