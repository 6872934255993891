"""The front application: the routes of the whole server (KServe v2 and OVMS's), serving every
model and pipeline by name over handles to their deployments, and the server's gRPC methods.

Its replicas follow the config actor's catalog (``CatalogFollower``); a model that a reload just
added is served in the front's own process until its deployment runs (app/bridge.py).
"""

from __future__ import annotations

import functools

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from app.bridge import BridgedServable
from app.config import MonitoringConfig
from app.config_actor import ConfigActorRef
from app.config_service import Catalog
from app.dataplane import DataPlane, RetiredServable, Servable
from app.deployments import LONG_POLL_SECONDS, handle_for
from app.errors import ConfigReloadFailed
from app.inference import InferRequest, InferResponse
from app.kserve_grpc import KServeGrpcMethods
from app.logs import show_lifecycle_logs
from app.metrics import ServingMetrics
from app.polling import ActorFollower
from app.rest import build_rest_app
from app.status import ModelVersionState, VersionStatus


class HandleServable:
    """A servable behind a deployment handle: the DataPlane calls it like an in-process one."""

    def __init__(self, deployment: str, versions: tuple[int, ...]) -> None:
        self.deployment, self.versions = deployment, versions
        self.starting = False  # set from the catalog: the deployment has no running replica yet

    @functools.cached_property
    def handle(self) -> DeploymentHandle:
        return handle_for(self.deployment)

    async def statuses(self) -> list[VersionStatus]:
        if self.starting:  # OVMS shows a model being loaded as LOADING; asking would wait for it
            return [VersionStatus(v, ModelVersionState.LOADING) for v in self.versions]
        return await self.handle.statuses.remote()

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
            servables[name] = RetiredServable(name, versions)
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


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress()
class Ingress(KServeGrpcMethods):
    """KServe v2 front end, REST and gRPC: decodes the wire, routes to servables by name, encodes the reply."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__
        self,
        config_actor: ConfigActorRef,
        max_request_bytes: int,
        monitoring: MonitoringConfig | None = None,
    ) -> None:
        show_lifecycle_logs()
        self.dataplane = DataPlane({})
        self.follower = CatalogFollower(self.dataplane, config_actor)
        await self.follower.start()
        self.max_request_bytes = max_request_bytes
        metrics = monitoring.metrics if monitoring is not None else None
        self.metrics = ServingMetrics(metrics.metrics_list) if metrics is not None and metrics.enable else None

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_rest_app(self.dataplane, self.max_request_bytes, reload=self.reload, metrics=self.metrics)

    def __del__(self) -> None:
        if getattr(self, "follower", None) is not None:
            self.follower.stop()

    async def reload(self) -> bool:
        """``POST /v1/config/reload``: load config.json now (and poll the loaders); True if anything changed."""
        changed, error = await self.follower.actor.reload.remote()  # the actor the catalog comes from
        if error is not None:
            raise ConfigReloadFailed(error)
        await self.follower.refresh()  # answer with the catalog the reload made
        return changed
