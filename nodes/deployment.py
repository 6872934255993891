"""One custom node as a Ray Serve deployment, and the client that calls it. Every Ray call of
``nodes`` is in this module; the node itself (``nodes.base.Node``) knows nothing of Ray.

    app = node_app(factory, params, "crop")                # an Application, one per pipeline node
    handle = serve.run(app, ...)  # or a DeploymentHandle injected into the pipeline's deployment
    client = NodeClient(handle, "crop")
    outputs = await client.run({"image": x}, ["images"])  # NodeCrashed if the replica died

The deployment of a node is shared by every pipeline node with the same library, params and
options (app/plan.py); each pipeline's client names the node as that pipeline does in errors.

A replica owns one node (nodes/hosted.py: ``initialize`` once, a failure kept and raised by every
call, ``run`` in a worker thread) and deinitializes it in ``__del__``, which Serve calls on graceful
shutdown. A pipeline can instead run a node inline, in its own replica, with the same class.
A C library that crashes (a segfault, an abort) inside a call is caught by the crash guard
(nodes/guard): that request gets NodeCrashed (500), the library is not called again, and the
replica fails its next health check, so Serve replaces it. A crash the guard cannot catch kills
the replica; the client turns the dead actor into NodeCrashed (500) for every request in flight
on it. Neither is retried, as in OVMS: the same input would likely crash the new replica too.
Requests sent meanwhile wait in Serve's router for the new replica.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from app.errors import find_serving_error
from app.logs import show_lifecycle_logs
from app.tensors import TensorInfo, Tensors
from nodes.base import Node
from nodes.errors import NodeCrashed, NodeFault
from nodes.hosted import HostedNode
from nodes.library import crash_report

log = logging.getLogger(__name__)

# A node is usually CPU-light and serialized, so a replica takes few requests at once; a crash
# then fails at most this many in-flight requests.
DEFAULT_MAX_ONGOING = 4


def check_no_crash() -> None:
    """Serve's health check of a replica that runs C nodes (its own, or a pipeline's inline ones):
    one whose library crashed here answered that request with NodeCrashed (500), and the process
    is not trusted again; failing the check makes Serve replace it once its requests finish."""
    report = crash_report()
    if report is not None:
        raise RuntimeError(f"{report}; Serve replaces this replica")


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=DEFAULT_MAX_ONGOING,
    health_check_period_s=2,  # notice a crashed replica quickly, so its replacement starts soon
    graceful_shutdown_wait_loop_s=0.2,
    graceful_shutdown_timeout_s=10,
)
class NodeDeployment:
    """One initialized node per replica (nodes/hosted.py); methods forward to it."""

    def __init__(self, factory: Callable[[], Node], params: dict[str, str], node_name: str) -> None:
        show_lifecycle_logs()
        self.hosted = HostedNode(factory, params, node_name)

    async def inputs_info(self) -> list[TensorInfo]:
        return await self.hosted.inputs_info()

    async def outputs_info(self) -> list[TensorInfo]:
        return await self.hosted.outputs_info()

    async def run(self, inputs: Tensors, outputs: list[str]) -> Tensors:
        return await self.hosted.run(inputs, outputs)

    def check_health(self) -> None:
        check_no_crash()

    def __del__(self) -> None:
        # Serve calls __del__ at graceful shutdown and Python may call it again at collection;
        # close deinitializes once. No hosted node when __init__ raised.
        hosted = self.__dict__.get("hosted")
        if hosted is not None:
            hosted.close()


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

    async def run(self, inputs: Tensors, outputs: Collection[str]) -> Tensors:
        return await self._call(self.handle.run.remote(inputs, list(outputs)))

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
            raise self._named(error) from exc

    def _named(self, error: Exception) -> Exception:
        """The error as this pipeline names the node: a node deployment is shared by the pipelines
        whose node has the same library and params, whatever each calls it."""
        if isinstance(error, NodeFault) and error.node != self.node_name and len(error.args) == 2:
            return type(error)(self.node_name, error.args[1])
        return error
