"""The front application: the routes of the whole server, and every name no other application has.

Serve's HAProxy front door sends ``/v2/models/<name>/...`` straight to the application of that
model or pipeline (app/deployments.py) once it has a running replica; everything else comes
here: the server routes (``/v2``, health, ``/v1/config``, reload, ``/metrics``), a model that a
reload just added (served in this process until its deployment runs, app/bridge.py), names a
reload removed (404, END), names nothing serves (OVMS's 404), and names a URL would escape
(served over a handle). gRPC carries the model's name in the message, not the path, so the
front's replicas run the server's gRPC service and call the servable over a handle.

Its replicas follow the config actor's catalog (``CatalogFollower``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Collection

import grpc
from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayError
from ray.serve.handle import DeploymentHandle

from app.bridge import BridgedServable
from app.config import MonitoringConfig
from app.config_actor import ConfigActorRef
from app.config_service import Catalog
from app.dataplane import DataPlane, RetiredServable, Servable
from app.deployments import LONG_POLL_SECONDS, handle_for, replica_reporter
from app.errors import ConfigReloadFailed
from app.inference import InferRequest, InferResponse
from app.kserve_grpc import KServeGrpcMethods, add_inference_service
from app.logs import show_lifecycle_logs
from app.metrics import ServingMetrics, exposition
from app.polling import ActorFollower, retrieve_outcome
from app.rest import build_rest_app
from app.status import ModelVersionState, VersionStatus

log = logging.getLogger(__name__)


# How long a status question waits for the deployment before the answer is what was last known.
# A replica that is being replaced (its process died) takes 15-20 s to answer; /v1/config and
# /ready must not wait for it.
STATUS_WAIT_SECONDS = 1.0


class HandleServable:
    """A servable behind a deployment handle: the DataPlane calls it like an in-process one."""

    def __init__(self, deployment: str, versions: tuple[int, ...]) -> None:
        self.deployment, self.versions = deployment, versions
        self.starting = False  # set from the catalog: the deployment has no running replica yet
        self._known: list[VersionStatus] | None = None  # the last statuses a replica gave
        self._asking: asyncio.Task[list[VersionStatus]] | None = None  # shared by every caller

    @functools.cached_property
    def handle(self) -> DeploymentHandle:
        return handle_for(self.deployment)

    def known_versions(self) -> Collection[int]:
        return self.versions

    async def statuses(self) -> list[VersionStatus]:
        """The replicas' answer, or what was last known when none answers within
        STATUS_WAIT_SECONDS (LOADING before any answer); the question stays asked meanwhile."""
        if self.starting:  # OVMS shows a model being loaded as LOADING; asking would wait for it
            return self._loading()
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask())
            self._asking.add_done_callback(retrieve_outcome)
        try:
            return await asyncio.wait_for(asyncio.shield(self._asking), STATUS_WAIT_SECONDS)
        except TimeoutError:
            return self._known or self._loading()
        except RayError as exc:  # the replica died while answering: Serve replaces it
            log.warning("%s did not answer its statuses (%s)", self.deployment, type(exc).__name__)
            return self._known or self._loading()

    async def _ask(self) -> list[VersionStatus]:
        self._known = await self.handle.statuses.remote()
        return self._known

    def _loading(self) -> list[VersionStatus]:
        return [VersionStatus(v, ModelVersionState.LOADING) for v in self.versions]

    async def metadata(self, version: int | None) -> dict:
        return await self.handle.metadata.remote(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.handle.infer.remote(request)


class CatalogFollower(ActorFollower):
    """Keeps one ingress replica's DataPlane in step with the config actor's catalog.

    The long-poll is also the ingress's heartbeat: the config actor cleans up once none calls.
    """

    def __init__(self, dataplane: DataPlane, config_actor: ConfigActorRef) -> None:
        super().__init__(config_actor.get, "the config actor")
        self.dataplane = dataplane
        # Catalogs are fetched by the long-poll and by refresh() at once; each fetch takes a ticket
        # when it asks, and a catalog is applied only if no later-asked one was applied already,
        # so a long-poll that returns after a reload's refresh cannot put an older catalog back.
        self._asked = 0
        self._applied = 0

    async def refresh(self) -> None:
        """Take the current catalog now, whatever revision this replica has seen."""
        await self._fetch(None, 0)

    async def _step(self) -> None:
        await self._fetch(self.seen, LONG_POLL_SECONDS)

    async def _fetch(self, seen: int | None, timeout: float) -> None:
        self._asked += 1
        ticket = self._asked
        catalog = await self.actor.wait_for_change.remote(seen, timeout)
        if ticket > self._applied and catalog.revision != seen:
            self.apply(catalog)
            self.seen, self._applied = catalog.revision, ticket

    def apply(self, catalog: Catalog) -> None:
        current = self.dataplane.servables
        servables: dict[str, Servable] = {}
        for name, deployment in catalog.servables.items():
            servables[name] = self._servable(name, deployment, catalog, current.get(name))
        for name, versions in catalog.retired.items():
            servables[name] = RetiredServable(name, versions, pipeline=name in catalog.retired_pipelines)
        self.dataplane.update(servables, catalog.ready)

    @staticmethod
    def _servable(name: str, deployment: str, catalog: Catalog, kept: Servable | None) -> Servable:
        """Keep what this replica has for ``name`` when it still fits, so handles and compiled bridges live on."""
        bridge = catalog.bridges.get(name)
        if bridge is not None:
            if (
                isinstance(kept, BridgedServable)
                and kept.config == bridge
                and isinstance(kept.deployment, HandleServable)
                and kept.deployment.deployment == deployment
            ):
                return kept
            handle = HandleServable(deployment, catalog.versions.get(name, (1,)))
            handle.starting = True
            return BridgedServable(bridge, handle)
        if isinstance(kept, BridgedServable):
            kept = kept.deployment
        if not (isinstance(kept, HandleServable) and kept.deployment == deployment):
            kept = HandleServable(deployment, catalog.versions.get(name, (1,)))
        kept.starting = deployment in catalog.starting
        return kept


async def start_grpc_server(servicer: KServeGrpcMethods, port: int, max_request_bytes: int) -> grpc.aio.Server:
    """KServe v2 gRPC on ``port`` of every interface. Replicas on one node share the port
    (SO_REUSEPORT), and the kernel spreads the connections over them."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1),
        ]
    )
    add_inference_service(servicer, server)
    server.add_insecure_port(f"[::]:{port}")  # raises if the port is taken by another program
    await server.start()
    return server


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress()
class Ingress(KServeGrpcMethods):
    """KServe v2 front end, REST and gRPC: decodes the wire, routes to servables by name, encodes the reply."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__
        self,
        config_actor: ConfigActorRef,
        max_request_bytes: int,
        monitoring: MonitoringConfig | None = None,
        grpc_port: int = 0,
    ) -> None:
        show_lifecycle_logs()
        self.dataplane = DataPlane({})
        self.follower = CatalogFollower(self.dataplane, config_actor)
        await self.follower.start()
        self.max_request_bytes = max_request_bytes
        metrics = monitoring.metrics if monitoring is not None else None
        self.metrics = ServingMetrics(metrics.metrics_list) if metrics is not None and metrics.enable else None
        board = (config_actor.name, config_actor.namespace)  # the config actor sums the counts
        self.reporter = replica_reporter(self.metrics, board) if self.metrics is not None else None
        # 0: no gRPC (tests of REST alone, or a second app on the same cluster)
        self.grpc_server = await start_grpc_server(self, grpc_port, max_request_bytes) if grpc_port else None

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_rest_app(
            self.dataplane, self.max_request_bytes, reload=self.reload, metrics=self.metrics, scrape=self.scrape
        )

    async def __del__(self) -> None:
        if getattr(self, "follower", None) is not None:
            self.follower.stop()
        grpc_server = getattr(self, "grpc_server", None)
        if grpc_server is not None:
            await grpc_server.stop(grace=5)

    async def reload(self) -> bool:
        """``POST /v1/config/reload``: load config.json now (and poll the loaders); True if anything changed."""
        changed, error = await self.follower.actor.reload.remote()  # the actor the catalog comes from
        if error is not None:
            raise ConfigReloadFailed(error)
        await self.follower.refresh()  # answer with the catalog the reload made
        return changed

    async def scrape(self) -> bytes:
        """``GET /metrics``: the counts of every replica that serves requests, summed by the config actor."""
        assert self.metrics is not None and self.reporter is not None
        await self.reporter.flush()
        return exposition(await self.follower.actor.metrics.remote(), self.metrics.enabled)
