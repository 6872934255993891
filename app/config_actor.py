"""The config actor: one named, detached Ray actor per cluster that owns the served config.json.

Its rules live in app/config_service.py; here is what they need from Ray: Serve to deploy plan
entries as applications, Ray's key-value store to remember what was deployed across a restart of
the actor's process, and the loader actor.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_put

from app.applications import application
from app.config_service import Catalog, ConfigService, ConfigSettings, ReloadOutcome
from app.logs import show_lifecycle_logs
from app.metrics import MetricsBoard, Snapshot
from app.plan import DEFAULT_CONFIG_ACTOR, Plan, Planned, PlanSettings
from loaders.actor import loader_actor_for, shutdown_loader_actor

log = logging.getLogger("rayvino.config")

NAMESPACE = "rayvino"
ACTOR_NAME = DEFAULT_CONFIG_ACTOR
# On the head node, as Serve's controller: a worker node that leaves must not take the actor
# (and a restarted one knows no fingerprints, so it would roll every deployment).
ON_HEAD_NODE = {"node:__internal_head__": 0.001}


class ServeDeployer:
    """Deploys plan entries as Serve applications; models and pipelines get their own route prefix."""

    def __init__(self, logging_config: dict[str, Any] | None) -> None:
        self.logging_config = logging_config

    async def deploy(self, planned: list[Planned]) -> None:
        # Only a runner's route (/v2/models) can be another app's: every other route names a model
        # or pipeline, and two apps sharing a name already share its deployment.
        runners = [p for p in planned if p.kind == "runner" and p.route_prefix]
        taken = await asyncio.to_thread(self._routes_of_others, {p.name for p in planned}) if runners else {}
        targets = [
            serve.RunTarget(
                application(p), name=p.name, route_prefix=self._route(p, taken), logging_config=self.logging_config
            )
            for p in planned
        ]
        await asyncio.to_thread(
            serve.run_many, targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False
        )

    @staticmethod
    def _route(planned: Planned, taken: dict[str, str]) -> str | None:
        """The entry's route, unless another app on the cluster has it: a second app's runner
        (``/v2/models``) then answers through its own front, over a handle."""
        prefix = planned.route_prefix
        if prefix is not None and prefix in taken:
            log.warning(
                "%s: %s is the route of application %s; serving without it", planned.name, prefix, taken[prefix]
            )
            return None
        return prefix

    @staticmethod
    def _routes_of_others(names: set[str]) -> dict[str, str]:
        """Route prefix -> application, for the applications other than ``names`` (Serve refuses
        a deploy whose prefix another application has). The controller's details are the one
        place Serve lists route prefixes; it keeps them private."""
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        assert client is not None  # the actor deploys only once Serve runs
        applications = client.get_serve_details()["applications"]
        return {
            details["route_prefix"]: app
            for app, details in applications.items()
            if app not in names and details.get("route_prefix")
        }

    async def delete(self, names: list[str]) -> None:
        for name in names:
            await asyncio.to_thread(serve.delete, name, _blocking=False)

    async def statuses(self, names: list[str]) -> dict[str, str]:
        applications = (await asyncio.to_thread(serve.status)).applications
        return {name: applications[name].status for name in names if name in applications}  # a str enum


class GcsMemory:
    """The actor's memory in Ray's GCS key-value store, which outlives the actor's process."""

    def __init__(self, key: str) -> None:
        self.key = key

    def read(self) -> dict[str, Any]:
        value = _internal_kv_get(self.key, namespace=NAMESPACE)
        return json.loads(value) if value else {}

    def write(self, record: dict[str, Any]) -> None:
        _internal_kv_put(self.key, json.dumps(record), namespace=NAMESPACE)


class LoaderActorOwner:
    """Keeps the loader actor in step with the plan; it exists only while the config has loaders."""

    def __init__(self, settings: PlanSettings) -> None:
        self.config = settings.loader_actor
        self.actor: Any = None  # the loader actor's handle, once a config has loaders
        self.incarnation: int | None = None

    async def apply(self, plan: Plan) -> list[str]:
        if self.actor is None and not plan.loaders and not plan.loader_models:
            return []
        self.actor = loader_actor_for(self.config)  # the existing one, or a new one after it ended
        errors = await self.actor.apply.remote(plan.loaders, plan.loader_models)
        self.incarnation = await self.actor.incarnation.remote()
        return [str(error) for error in errors]

    async def poll(self, timeout: float) -> bool:
        if self.actor is None:  # the config has no loaders
            return False
        return await self.actor.poll_now.remote(timeout)

    async def ensure(self, plan: Plan) -> None:
        """A restarted loader actor came back with its first specs: give it the current ones."""
        if self.actor is not None and await self.actor.incarnation.remote() != self.incarnation:
            await self.apply(plan)

    async def shutdown(self) -> None:
        if self.actor is not None:
            await shutdown_loader_actor(namespace=self.config.namespace, name=self.config.name)
            self.actor = None


class _RayConfigService(ConfigService):
    """The actor: starts the watcher once the first config is applied."""

    def __init__(self, settings: ConfigSettings, logging_config: dict[str, Any] | None) -> None:
        show_lifecycle_logs()
        memory = GcsMemory(f"{ray.get_runtime_context().get_actor_name()}/deployed")
        super().__init__(settings, ServeDeployer(logging_config), LoaderActorOwner(settings.plan), memory=memory)
        self._watcher: asyncio.Task | None = None
        self._resuming: asyncio.Task | None = None
        self.board = MetricsBoard()  # every replica's request counts, for GET /metrics

    def report_metrics(self, source: str, snapshot: Snapshot) -> None:
        self.board.report(source, snapshot)

    def metrics(self) -> Snapshot:
        return self.board.total()

    async def wait_for_change(self, seen: int | None, timeout: float, heartbeat: bool = True) -> Catalog:
        await self._resume()
        return await super().wait_for_change(seen, timeout, heartbeat)

    async def reload(self, wait_seconds: float = 60.0) -> tuple[bool, str | None]:
        await self._resume()
        return await super().reload(wait_seconds)

    async def _resume(self) -> None:
        """Ray restarts this actor when its process dies, and then nobody calls ``start``: the
        first ingress call does, and only what changed meanwhile is redeployed (``_recovered``)."""
        if self._watcher is None and ray.get_runtime_context().was_current_actor_reconstructed:
            if self._resuming is None:
                log.warning("config actor restarted: loading the config again")
                self._resuming = asyncio.get_running_loop().create_task(self.start())
            await asyncio.shield(self._resuming)

    async def start(self, settings: ConfigSettings | None = None) -> ReloadOutcome:
        """Load the config and start watching it. A later build of the app (a redeploy, or a new
        ``serve run`` on the same cluster) finds this actor and hands it its settings."""
        if settings is not None and settings != self.settings:
            self.settings, self.state.checksum = settings, None  # load again, even if the file is the same
            self.loaders = LoaderActorOwner(settings.plan)
        self._last_ingress_call, self._started_at = None, self.clock()
        outcome = await self.load()
        self.mark_answered()
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return outcome

    async def _watch(self) -> None:
        poll = self.settings.poll_seconds
        while True:
            await asyncio.sleep(poll if poll > 0 else 1.0)
            try:
                if poll > 0:
                    await self.load()
                if self.state.plan is not None:
                    await self.loaders.ensure(self.state.plan)
                await self.check_ready()
                if self.app_gone():
                    log.info(
                        "no ingress has called for %.0f s: the app is gone; cleaning up",
                        self.settings.idle_shutdown_seconds,
                    )
                    await self.shutdown()
                    ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad tick end the watcher
                log.exception("config watcher tick failed")


ConfigActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_RayConfigService)


def get_or_create_config_actor(
    settings: ConfigSettings,
    logging_config: dict[str, Any] | None = None,
    *,
    name: str = ACTOR_NAME,
    namespace: str = NAMESPACE,
):
    """The cluster's config actor (detached: it outlives the build task that creates it)."""
    return ConfigActor.options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True, resources=ON_HEAD_NODE
    ).remote(settings, logging_config)


@dataclass(frozen=True)
class ConfigActorRef:
    """How the ingress finds the config actor, or brings it back (e.g. after its node died)."""

    settings: ConfigSettings
    logging_config: dict[str, Any] | None = None
    name: str = ACTOR_NAME
    namespace: str = NAMESPACE

    def get(self):
        return get_or_create_config_actor(self.settings, self.logging_config, name=self.name, namespace=self.namespace)
