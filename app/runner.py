"""The shared pipeline runner: one deployment runs every pipeline that sets no Serve option of its
own, so thirty pipelines cost one process, not thirty.

Its pipelines come as Serve's ``user_config`` (app/plan.py): ``reconfigure`` builds the pipelines
that are new or changed, validates them, swaps them in and retires the ones they replace once
their requests in flight are done; the others keep running untouched. Serve calls it on every
running replica, and with the current config on every replica it starts.

It answers at ``/v2/models``, below every model and pipeline of its own: the front door sends
it every model name no application claims by its own route. So it follows the config actor's
catalog like the front does (app/front.py) and answers those names as the front would: a model
still starting over a handle or in its own process, a removed one END, an unknown one OVMS's 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

import ray
from ray import serve

from app.config_service import Catalog
from app.dataplane import DataPlane, Servable
from app.deployments import SIGNATURE_WAIT_SECONDS, OwnRoutes, PipelineHost, settle_on_node
from app.errors import ModelVersionNotLoadedYet
from app.following import CatalogFollower
from app.inference import InferRequest, InferResponse
from app.local_models import LocalModels
from app.pipeline.status import PIPELINE_VERSION
from app.plan import PipelineSpec, is_runner
from app.polling import retrieve_outcome
from app.rest import RouteSettings
from app.status import ModelVersionState, VersionStatus
from nodes.deployment import check_no_crash

log = logging.getLogger(__name__)


class Arriving:
    """A pipeline the catalog gives this runner before its ``reconfigure`` has built it: calls
    wait for it (as a handle call waits for a starting deployment), and it shows LOADING."""

    def __init__(self, name: str, runner: PipelineRunner) -> None:
        self.name, self.runner = name, runner

    def known_versions(self) -> Collection[int]:
        return (PIPELINE_VERSION,)

    async def statuses(self) -> list[VersionStatus]:
        return await self.runner.statuses(self.name)

    async def metadata(self, version: int | None) -> dict:
        return await self.runner.metadata(self.name, version)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.runner.infer(request)


class RunnerFollower(CatalogFollower):
    """The runner's view of the catalog: its own pipelines are served here, the rest as the front
    serves them. Its polls are no heartbeat: the runner is not the app."""

    heartbeat = False

    def __init__(self, runner: PipelineRunner, config_actor: tuple[str, str]) -> None:
        name, namespace = config_actor
        super().__init__(runner.dataplane, lambda: ray.get_actor(name, namespace=namespace))
        self.runner = runner

    def _servable(self, name: str, deployment: str, catalog: Catalog, kept: Servable | None) -> Servable:
        if is_runner(deployment):
            return self.runner.hosts.get(name) or Arriving(name, self.runner)
        return super()._servable(name, deployment, catalog, kept)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256, health_check_period_s=2)
@serve.ingress()
class PipelineRunner(OwnRoutes):
    """Runs many pipelines in each replica; Serve hands it their specs through ``reconfigure``.

    ``config_actor`` (name, namespace): the actor whose catalog it follows; None (tests) serves
    its own pipelines alone.
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__
        self, routes: RouteSettings | None = None, config_actor: tuple[str, str] | None = None
    ) -> None:
        settle_on_node()
        self.hosts: dict[str, PipelineHost] = {}
        self.prints: dict[str, str] = {}  # pipeline -> the fingerprint its host was built from
        self.models = LocalModels()  # the models its pipelines run in this replica, shared
        self._arrived = asyncio.Event()  # set at every reconfigure, for calls waiting for a pipeline
        self.dataplane = DataPlane({})  # its pipelines, and the catalog's other names when following one
        self.serve_routes(self.dataplane, routes or RouteSettings())
        self.follower = RunnerFollower(self, config_actor) if config_actor is not None else None
        if self.follower is not None:
            await self.follower.start()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Build and validate the pipelines that are new or changed, then swap them all in at once."""
        wanted: dict[str, dict[str, Any]] = user_config["pipelines"]
        built = {
            name: PipelineHost(PipelineSpec.from_json(entry["spec"]), self.models)
            for name, entry in wanted.items()
            if self.prints.get(name) != entry["print"]
        }
        await asyncio.gather(*(host.start() for host in built.values()))
        leaving = [host for name, host in self.hosts.items() if name not in wanted or name in built]
        self.hosts = {name: built.get(name) or self.hosts[name] for name in wanted}
        self.prints = {name: entry["print"] for name, entry in wanted.items()}
        for host in leaving:
            asyncio.ensure_future(host.retire()).add_done_callback(retrieve_outcome)
        self._publish()
        if built or leaving:
            log.info("pipelines: %d built, %d retired, %d running", len(built), len(leaving), len(self.hosts))

    def _publish(self) -> None:
        """Serve the current pipelines, with the catalog's other names when following one."""
        catalog = self.follower.catalog if self.follower is not None else None
        if catalog is not None:
            self.follower.apply(catalog)  # type: ignore[union-attr]  # set with the catalog
        else:
            self.dataplane.update(dict(self.hosts), ready=True)
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def host(self, name: str) -> PipelineHost:
        """The pipeline's host, once a reconfigure has built it (at most SIGNATURE_WAIT_SECONDS)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SIGNATURE_WAIT_SECONDS
        while name not in self.hosts:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ModelVersionNotLoadedYet(f"pipeline '{name}' is still being loaded")
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass
        return self.hosts[name]

    # The front's calls, over a handle: gRPC, and names a URL would escape.

    async def statuses(self, name: str) -> list[VersionStatus]:
        host = self.hosts.get(name)
        return await host.statuses() if host else [VersionStatus(PIPELINE_VERSION, ModelVersionState.LOADING)]

    async def metadata(self, name: str, version: int | None) -> dict:
        return await (await self.host(name)).metadata(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await (await self.host(request.model_name)).infer(request)

    def check_health(self) -> None:
        check_no_crash()

    def __del__(self) -> None:
        # Serve calls __del__ at graceful shutdown: deinitialize every inline node, once each.
        follower = self.__dict__.get("follower")
        if follower is not None:
            follower.stop()
        for host in self.__dict__.get("hosts", {}).values():
            host.close()
