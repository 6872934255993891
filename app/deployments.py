"""Thin Ray Serve deployments: each forwards to a plain-Python core and holds no rules of its own.

A model's or pipeline's deployment is the ingress of its own application: it answers the KServe
v2 routes of its name (``/v2/models/<name>/...``), which Serve's HAProxy front door routes to
its replicas directly, and the calls of pipelines and of the front application over handles.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import ray
from ray import serve
from ray.exceptions import ObjectLostError, RayActorError
from ray.serve.handle import DeploymentHandle
from starlette.types import ASGIApp

from app.batching import BatchedModel
from app.config import MODEL_MAX_ONGOING_REQUESTS, DynamicBatching, ModelConfig, ModelNode
from app.dataplane import DataPlane
from app.errors import ServingError, causes
from app.inference import InferRequest, InferResponse, RequestedOutput
from app.local_models import LocalModels
from app.logs import show_lifecycle_logs
from app.metrics import MetricsReporter, ServingMetrics, Snapshot
from app.model import ModelServable
from app.pipeline import CatalogError, DictCatalog, NodeSpec, Signature
from app.pipeline.catalog import INITIALIZE_FAILED, INVALID_NODE_LIBRARY, METADATA_FAILED, MISSING_MODEL
from app.pipeline.servable import PipelineServable
from app.plan import PipelineSpec
from app.polling import ActorFollower, Poller
from app.rest import RouteSettings, build_servable_app
from app.status import VersionStatus
from app.storage import use_node
from app.tensors import TensorInfo, Tensors
from loaders.actor import loader_actor_for
from loaders.specs import LoaderActorConfig
from nodes.deployment import NodeClient, check_no_crash
from nodes.errors import NodeInitializeFailed
from nodes.hosted import HostedNode

log = logging.getLogger(__name__)
T = TypeVar("T")

LONG_POLL_SECONDS = 2.0  # a replica's heartbeat to the loader and config actors; keep well under their grace
SIGNATURE_WAIT_SECONDS = 30.0  # a pipeline waits this long for a starting model or node before it reports it


async def call_model(call: Callable[[], Awaitable[T]]) -> T:
    """One model call of a pipeline, sent once more if the replica was lost while it ran (its node
    died): inference has no side effects, and Serve routes the second try to a live replica.
    Serve itself re-routes only calls no replica has accepted yet. A model's own error is its
    answer, and custom nodes are not retried (a crashing library would crash again, as in OVMS)."""
    try:
        return await call()
    except RayActorError as exc:  # ActorUnavailableError, ActorDiedError: the replica, not the request
        log.warning("model replica lost mid-call (%s); sending the call once more", type(exc).__name__)
        return await call()


async def rerun_if_tensor_lost(run: Callable[[], Awaitable[T]]) -> T:
    """A pipeline request, run once more if a tensor between its stages was lost with the node
    that held it (ObjectLostError and its kin): an answer over 8 MiB (app/serve_flags.py) waits in
    the object store of the node that made it until the pipeline reads it, and a stage reads its
    large arguments from the pipeline's node. The graph has no side effects, and the second run's
    calls go to live replicas."""
    try:
        return await run()
    except Exception as exc:
        lost = next((e for e in causes(exc) if isinstance(e, ObjectLostError)), None)
        if lost is None:
            raise
        log.warning("a tensor between stages was lost (%s); running the request once more", type(lost).__name__)
        return await run()


def replica_reporter(metrics: ServingMetrics, board: tuple[str, str]) -> MetricsReporter:
    """Reports this replica's counts to the metrics board, the named actor ``board`` (name, namespace)."""
    replica = serve.get_replica_context().replica_id
    source = f"{replica.deployment_id.name}/{replica.unique_id}"
    actor = None

    async def send(snapshot: Snapshot) -> None:
        nonlocal actor
        if actor is None:
            actor = ray.get_actor(board[0], namespace=board[1])
        await actor.report_metrics.remote(source, snapshot)

    return MetricsReporter(metrics, send)


class OwnRoutes:
    """A deployment whose replicas answer the REST routes of what they hold (one model or
    pipeline, or the runner's pipelines)."""

    rest_app: ASGIApp
    metrics: ServingMetrics | None = None
    reporter: MetricsReporter | None = None

    def serve_routes(self, dataplane: DataPlane, settings: RouteSettings) -> None:
        """Answer the routes of what ``dataplane`` serves; count the requests, and report them to
        the board, if the config asks."""
        if settings.metrics_list is not None:
            self.metrics = ServingMetrics(settings.metrics_list)
            if settings.metrics_board is not None:
                self.reporter = replica_reporter(self.metrics, settings.metrics_board)
        self.rest_app = build_servable_app(dataplane, settings.max_request_bytes, self.metrics)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return self.rest_app


def handle_for(deployment: str) -> DeploymentHandle:
    """A handle to a plan entry: the deployment and its application share the name (app/plan.py).

    Not checked to exist: the entry may still be deploying, and calls wait for its first replica.
    """
    return serve.get_deployment_handle(deployment, app_name=deployment, _check_exists=False)


class LoaderFollower(ActorFollower):
    """Keeps one replica's loader-backed model in step with the loader actor.

    Each call acknowledges the snapshot the replica has fully applied (drains included) and
    returns the next one, so the actor can wait for every replica before it unloads a version.
    """

    def __init__(self, model: ModelServable, loader_actor: LoaderActorConfig, replica: str) -> None:
        super().__init__(functools.partial(loader_actor_for, loader_actor), f"model {model.name}: the loader actor")
        self.model, self.replica = model, replica

    async def _step(self) -> None:
        name = self.model.name
        snapshot = await self.actor.wait_for_change.remote(name, self.seen, LONG_POLL_SECONDS, self.replica)
        if snapshot.generation is None:
            # The actor has not been given this model: it restarted (a loader crashed it) and the
            # config actor has not re-sent the specs yet. That says nothing: keep serving what we have.
            return
        if snapshot.generation != self.seen:
            await self.model.follow(snapshot, lambda version: self.actor.buffers.remote(name, version))
            self.seen = snapshot.generation

    def stop(self) -> None:
        super().stop()
        self.actor.leave.remote(self.model.name, self.replica)


class ServeBatcher:
    """A model's requests gathered by Serve's ``@serve.batch`` and run by the Ray-free BatchedModel.

    The batch function is made per instance, so each replica's model has its own queue and sizes.
    """

    def __init__(self, model: ModelServable, options: DynamicBatching) -> None:
        self.batches = BatchedModel(model)

        @serve.batch(max_batch_size=options.max_batch_size, batch_wait_timeout_s=options.batch_wait_timeout_s)
        async def run_batch(requests: list[InferRequest]) -> list[InferResponse | Exception]:
            return await self.batches.infer(requests)

        self.run_batch = run_batch

    async def infer(self, request: InferRequest) -> InferResponse:
        outcome = await self.run_batch(request)
        if isinstance(outcome, Exception):
            raise outcome  # this request's own error; the rest of its batch was answered
        return outcome


def settle_on_node() -> None:
    """What every replica that compiles models does first: log its lifecycle, and cache the models
    it downloads from object stores in this Ray node's folder (app/storage.py)."""
    show_lifecycle_logs()
    if ray.is_initialized():  # not in Serve's local testing mode, where asking would start a Ray
        use_node(ray.get_runtime_context().get_node_id())


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=MODEL_MAX_ONGOING_REQUESTS)
@serve.ingress()
class ModelDeployment(OwnRoutes):
    """One model: every replica compiles each served version once.

    A disk-backed model re-scans its version folders every ``file_system_poll_wait_seconds``; a
    loader-backed model takes its versions from the loader actor instead of the disk. With
    ``batching``, concurrent requests are merged into shared inferences (app/batching.py).
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__
        self,
        config: ModelConfig,
        loader_actor: LoaderActorConfig | None = None,
        file_system_poll_wait_seconds: float = 1.0,
        batching: DynamicBatching | None = None,
        routes: RouteSettings | None = None,
    ) -> None:
        settle_on_node()
        self.serve_routes(DataPlane({config.name: self}), routes or RouteSettings())
        self.model = ModelServable(config, batched=batching is not None)
        self.batcher = ServeBatcher(self.model, batching) if batching is not None else None
        self._infer = self.batcher.infer if self.batcher is not None else self.model.infer
        self.follower: LoaderFollower | None = None
        self.poller: Poller | None = None
        if config.uses_loader and loader_actor is not None:
            replica = serve.get_replica_context().replica_id.unique_id
            self.follower = LoaderFollower(self.model, loader_actor, replica)
            await self.follower.start()
        else:
            self.model.load()
            if file_system_poll_wait_seconds > 0:  # 0 disables watching the version folders, as in OVMS
                self.poller = Poller(
                    self.model.refresh, file_system_poll_wait_seconds, f"{config.name} folders"
                ).start()

    def __del__(self) -> None:
        # getattr: __init__ may have failed before setting them
        follower, poller = getattr(self, "follower", None), getattr(self, "poller", None)
        if follower is not None:
            follower.stop()
        if poller is not None:
            poller.stop()

    async def statuses(self) -> list[VersionStatus]:
        return self.model.statuses()

    def known_versions(self) -> Collection[int]:
        return self.model.known_versions()

    async def metadata(self, version: int | None) -> dict:
        return self.model.metadata(version)

    async def signature(self, version: int | None) -> tuple[int, list[TensorInfo], list[TensorInfo]]:
        return self.model.signature(version)

    async def batch_sizes(self) -> dict[int, int]:
        """Inferences this replica ran, by how many requests each merged; empty without batching."""
        return dict(self.batcher.batches.sizes) if self.batcher is not None else {}

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self._infer(request)


class PipelineHost:
    """One pipeline as a replica runs it: handles to its model and node deployments, the nodes and
    models it runs inline (each node initialized here and deinitialized by ``close``, each model
    shared with the replica's other pipelines, app/local_models.py), and its graph.

    Nodes run as soon as their inputs are ready; shards of a demultiplexer go out concurrently
    and Serve spreads them over the target deployment's replicas.
    """

    def __init__(self, spec: PipelineSpec, local_models: LocalModels) -> None:
        self.spec, self.local_models = spec, local_models
        self.inline_models: dict[str, ModelServable] = {}  # taken by start()
        self._handles: dict[str, DeploymentHandle] = {}  # model -> its deployment's, made when first called
        self.nodes: dict[str, NodeClient | HostedNode] = {
            name: NodeClient(handle_for(deployment), name) for name, deployment in spec.nodes.items()
        }
        for name, node in spec.inline.items():
            self.nodes[name] = HostedNode(node.factory, node.params, name)
        self.library_errors = spec.library_errors  # node name -> why its library could not be loaded
        self.pipeline = PipelineServable(spec.config, self._catalog, self._call)
        self.running = 0  # requests in flight: inline nodes are deinitialized only once none is

    async def start(self) -> None:
        """Compile the models it runs itself (those another pipeline of this replica took are
        shared), then validate the pipeline."""
        for name, config in self.spec.inline_models.items():
            try:
                self.inline_models[name] = await self.local_models.take(config, self.spec.poll_seconds)
            except Exception:  # its deployment may still serve it: calls go there instead
                log.exception("model %s: cannot run it in this pipeline replica; calling its deployment", name)
        await self.pipeline.validate()

    async def statuses(self) -> list[VersionStatus]:
        return await self.pipeline.statuses()

    def known_versions(self) -> Collection[int]:
        return self.pipeline.known_versions()

    async def metadata(self, version: int | None) -> dict:
        return await self.pipeline.metadata(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        self.running += 1
        try:
            return await rerun_if_tensor_lost(lambda: self.pipeline.infer(request))
        finally:
            self.running -= 1

    def close(self) -> None:
        """Deinitialize each inline node, once, and give back the models it ran itself."""
        for node in self.nodes.values():
            if isinstance(node, HostedNode):
                node.close()
        for name in list(self.inline_models):
            del self.inline_models[name]
            self.local_models.give_back(self.spec.inline_models[name])

    async def retire(self, poll_seconds: float = 0.1) -> None:
        """Close once the requests in flight have finished (a reload replaced or removed it)."""
        while self.running:
            await asyncio.sleep(poll_seconds)
        self.close()

    async def _call(self, spec: NodeSpec, inputs: Tensors) -> Tensors:
        # Tensors go to other deployments by value, never as object references we put ourselves:
        # Ray 2.60 can free an object whose reference travels inside a Serve response (a streaming
        # call) and then on to another replica, and the stage that reads it fails with
        # ReferenceCountingAssertionError. Ray moves a value inside its task messages up to 8 MiB
        # (app/serve_flags.py) and through its shared-memory object store above, so a hop costs a
        # copy or two of the tensor, not a trip through Python.
        node = spec.node
        if isinstance(node, ModelNode):
            request = InferRequest(node.model_name, node.version, inputs, [RequestedOutput(o) for o in spec.outputs])
            model = self.inline_models.get(node.model_name)
            if model is not None:
                return (await model.infer(request)).outputs
            handle = self._model_handle(node.model_name)
            return (await call_model(lambda: handle.infer.remote(request))).outputs
        return await self.nodes[node.name].run(inputs, spec.outputs)

    def _model_handle(self, name: str) -> DeploymentHandle:
        if name not in self._handles:
            self._handles[name] = handle_for(self.spec.models[name])
        return self._handles[name]

    async def _catalog(self) -> DictCatalog:
        """Every model's and node's signature, asked of their deployments."""
        catalog = DictCatalog()
        for node in self.pipeline.config.nodes:
            if isinstance(node, ModelNode):
                await self._add_model(catalog, node.model_name, node.version)
            else:
                catalog.add_node(node.library_name, node.params, await self._node_signature(node.name))
        return catalog

    async def _add_model(self, catalog: DictCatalog, name: str, version: int | None) -> None:
        if name not in self.spec.models:
            return  # not in model_config_list: validation reports the missing model
        model = self.inline_models.get(name)
        try:
            if model is not None:
                served, inputs, outputs = model.signature(version)
            else:
                asked = self._model_handle(name).signature.remote(version)
                served, inputs, outputs = await asyncio.wait_for(asked, SIGNATURE_WAIT_SECONDS)
        except ServingError as exc:
            catalog.models.setdefault(name, CatalogError(MISSING_MODEL, exc.message))
            return
        except TimeoutError:  # its deployment is still starting: validated again when asked
            catalog.models.setdefault(name, CatalogError(MISSING_MODEL, f"model '{name}' is not deployed yet"))
            return
        catalog.add_model(name, served, Signature.of(inputs, outputs))

    async def _node_signature(self, node: str) -> Signature | CatalogError:
        if node in self.library_errors:
            return CatalogError(INVALID_NODE_LIBRARY, self.library_errors[node])
        client = self.nodes[node]
        try:
            inputs = await asyncio.wait_for(client.inputs_info(), SIGNATURE_WAIT_SECONDS)
            return Signature.of(inputs, await client.outputs_info())
        except TimeoutError:
            return CatalogError(METADATA_FAILED, f"node '{node}' is not deployed yet")
        except NodeInitializeFailed as exc:
            return CatalogError(INITIALIZE_FAILED, exc.message)
        except ServingError as exc:
            return CatalogError(METADATA_FAILED, exc.message)
        except Exception as exc:  # an inline Python node's metadata is user code run here
            return CatalogError(METADATA_FAILED, f"{type(exc).__name__}: {exc}")


# A replica whose inline C node crashed fails its health check: checked every 2 s, not Serve's 10.
@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64, health_check_period_s=2)
@serve.ingress()
class PipelineDeployment(OwnRoutes):
    """A pipeline with a deployment of its own (Serve options of its own, or ``"shared":
    false``): its replicas run it (``PipelineHost``) and answer its routes."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__
        self, spec: PipelineSpec, routes: RouteSettings | None = None
    ) -> None:
        show_lifecycle_logs()
        self.serve_routes(DataPlane({spec.config.name: self}), routes or RouteSettings())
        self.host = PipelineHost(spec, LocalModels())
        await self.host.start()

    async def statuses(self) -> list[VersionStatus]:
        return await self.host.statuses()

    def known_versions(self) -> Collection[int]:
        return self.host.known_versions()

    async def metadata(self, version: int | None) -> dict:
        return await self.host.metadata(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.host.infer(request)

    def check_health(self) -> None:
        check_no_crash()

    def __del__(self) -> None:
        # Serve calls __del__ at graceful shutdown; close deinitializes each inline node once.
        host = self.__dict__.get("host")
        if host is not None:
            host.close()
