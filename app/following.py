"""How the ingress replicas (and the pipeline runner's) follow the config actor's catalog: the
servables they call over handles, kept in step with the catalog by a long-poll."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection
from typing import Any

from ray.exceptions import RayError
from ray.serve.handle import DeploymentHandle

from app.bridge import BridgedServable
from app.config_service import Catalog
from app.dataplane import DataPlane, RetiredServable, Servable
from app.deployments import LONG_POLL_SECONDS, handle_for
from app.inference import InferRequest, InferResponse
from app.pipeline.status import PIPELINE_VERSION
from app.plan import is_runner
from app.polling import ActorFollower, retrieve_outcome
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


class RunnerServable(HandleServable):
    """A pipeline the shared pipeline runner runs: the runner's calls name which one."""

    def __init__(self, deployment: str, name: str) -> None:
        super().__init__(deployment, (PIPELINE_VERSION,))
        self.name = name

    async def _ask(self) -> list[VersionStatus]:
        self._known = await self.handle.statuses.remote(self.name)
        return self._known

    async def metadata(self, version: int | None) -> dict:
        return await self.handle.metadata.remote(self.name, version)


class CatalogFollower(ActorFollower):
    """Keeps one ingress replica's DataPlane in step with the config actor's catalog.

    The long-poll is also the ingress's heartbeat: the config actor cleans up once none calls.
    """

    heartbeat = True  # the ingress's polls tell the config actor the app is alive

    def __init__(self, dataplane: DataPlane, find_config_actor: Callable[[], Any]) -> None:
        super().__init__(find_config_actor, "the config actor")
        self.dataplane = dataplane
        self.catalog: Catalog | None = None  # the last one applied
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
        catalog = await self.actor.wait_for_change.remote(seen, timeout, self.heartbeat)
        if ticket > self._applied and catalog.revision != seen:
            self.apply(catalog)
            self.seen, self._applied = catalog.revision, ticket

    def apply(self, catalog: Catalog) -> None:
        self.catalog = catalog
        current = self.dataplane.servables
        servables: dict[str, Servable] = {}
        for name, deployment in catalog.servables.items():
            servables[name] = self._servable(name, deployment, catalog, current.get(name))
        for name, versions in catalog.retired.items():
            servables[name] = RetiredServable(name, versions, pipeline=name in catalog.retired_pipelines)
        self.dataplane.update(servables, catalog.ready)

    def _servable(self, name: str, deployment: str, catalog: Catalog, kept: Servable | None) -> Servable:
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
            kept = (
                RunnerServable(deployment, name)
                if is_runner(deployment)
                else HandleServable(deployment, catalog.versions.get(name, (1,)))
            )
        kept.starting = name in catalog.loading
        return kept
