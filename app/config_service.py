"""The body of the config actor (app/config_actor.py), in plain asyncio: unit tests drive it with a
fake deployer. One config actor per cluster owns the served config.json:

* It reads config.json at start and whenever its checksum changes (every
  ``file_system_poll_wait_seconds``, as OVMS's watcher) or ``POST /v1/config/reload`` asks.
  A file that fails the schema applies nothing; the error is kept for the reload answer.
* A reload also has the loader actor check every loader's blacklist at once, as OVMS's reload
  runs its watcher's path, even with the watcher off; it answers once the replicas serve the
  outcome, so a version blacklisted a moment ago is END (404) by then.
* It turns the config into a plan (app/plan.py) and deploys only what changed: each model,
  pipeline and node is a Serve application of its own, so unchanged ones keep their replicas
  and their requests in flight. Removed models and pipelines stay listed as END (404).
* A new model's or pipeline's application gets its route (``/v2/models/<name>``) once it runs:
  until then the front door would hold its requests for the first replica, while the front
  application can serve them (a new model in its own process, app/bridge.py). Opening the route
  changes nothing else, so Serve applies it to the running replicas in place.
* It gives the loader actor the current loaders and loader-backed models on every change.
* The ingress replicas follow its ``Catalog`` with a long-poll; the poll is also how the actor
  knows the app is alive. When no poll is pending and none has been for ``idle_shutdown_seconds``,
  the app is gone: the actor deletes the deployments it made, deinitialises the loaders and ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from app.config import ConfigError, ModelConfig, ServerConfig, config_folder, load_config
from app.plan import Plan, Planned, PlanSettings, is_runner, loader_specs, plan_config
from app.polling import Revision, retrieve_outcome

log = logging.getLogger("rayvino.config")

NEVER_CALLED_GRACE_SECONDS = 300.0  # no ingress ever came: give the app this long to start


@dataclass(frozen=True)
class Catalog:
    """What the ingress serves: a name's deployment, or END for a name a reload removed."""

    revision: int
    servables: dict[str, str]  # model or pipeline name -> its deployment (and application) name
    versions: dict[str, tuple[int, ...]]  # model -> versions its policy serves (shown while it starts)
    retired: dict[str, tuple[int, ...]]  # name -> versions, all reported END
    errors: tuple[str, ...]  # config entries skipped, and the last reload's failure if any
    starting: frozenset[str]  # deployments (re)deployed and not RUNNING yet
    # Models a reload added whose deployment is still starting: the ingress serves them itself
    # until it runs (app/bridge.py), so a new model answers in about a second, not a process start.
    bridges: dict[str, ModelConfig] = field(default_factory=dict)
    retired_pipelines: frozenset[str] = frozenset()  # those of ``retired`` that were pipelines
    # Models and pipelines whose versions show LOADING: those of the starting deployments, but only
    # the changed pipelines of a runner that is being reconfigured (the others keep serving).
    loading: frozenset[str] = frozenset()

    @property
    def ready(self) -> bool:
        return not self.starting


@dataclass(frozen=True)
class ReloadOutcome:
    changed: bool
    error: str | None = None  # the file failed to load: nothing was applied


class Deployer(Protocol):
    async def deploy(self, planned: list[Planned]) -> None: ...

    async def delete(self, names: list[str]) -> None: ...

    async def statuses(self, names: list[str]) -> dict[str, str]:
        """Serve's status (RUNNING, DEPLOYING, DELETING...) of each of ``names`` that Serve has."""
        ...


class Memory(Protocol):
    """Where the actor keeps what it must not forget when its process dies (what it deployed)."""

    def read(self) -> dict[str, Any]: ...

    def write(self, record: dict[str, Any]) -> None: ...


class InProcessMemory:
    """A memory that dies with the process: for tests, and for running without Ray."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}

    def read(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.record))  # a copy, as a store would give

    def write(self, record: dict[str, Any]) -> None:
        self.record = record


class LoaderOwner(Protocol):
    async def apply(self, plan: Plan) -> list[str]: ...

    async def poll(self, timeout: float) -> bool:
        """Check every blacklist now and wait up to ``timeout`` for the replicas; whether a version changed."""
        ...

    async def ensure(self, plan: Plan) -> None: ...

    async def shutdown(self) -> None: ...


@dataclass
class ConfigSettings:
    config_path: str
    plan: PlanSettings
    poll_seconds: float = 1.0
    idle_shutdown_seconds: float = 30.0


@dataclass
class _State:
    checksum: str | None = None
    config: ServerConfig | None = None
    plan: Plan | None = None
    retired: dict[str, tuple[int, ...]] = field(default_factory=dict)
    retired_pipelines: set[str] = field(default_factory=set)
    load_error: str | None = None
    starting: set[str] = field(default_factory=set)
    unrouted: set[str] = field(default_factory=set)  # deployed without the route they will have
    leaving: set[str] = field(default_factory=set)  # deleted, and Serve still has them (routes and all)
    bridges: set[str] = field(default_factory=set)  # see Catalog.bridges
    reconfigured: dict[str, set[str]] = field(default_factory=dict)  # a starting runner -> its changed pipelines


class ConfigService:
    def __init__(
        self,
        settings: ConfigSettings,
        deployer: Deployer,
        loaders: LoaderOwner,
        clock: Callable[[], float] = time.monotonic,
        memory: Memory | None = None,
    ) -> None:
        self.settings, self.deployer, self.loaders, self.clock = settings, deployer, loaders, clock
        self.memory = memory or InProcessMemory()
        self.state = _State()
        self.revision = Revision()  # of the catalog, which the ingress replicas long-poll
        self._lock = asyncio.Lock()  # one load at a time: the watcher and POST /v1/config/reload
        self._started_at = clock()
        self._last_ingress_call: float | None = None
        self._polls_waiting = 0  # an ingress with a long-poll pending is alive, however long it waits
        self.changes = 0  # loads that deployed, deleted or re-applied something
        self._changes_answered = 0

    # ----- loading ------------------------------------------------------------------------------

    async def reload(self, wait_seconds: float = 60.0) -> tuple[bool, str | None]:
        """``POST /v1/config/reload``: load now, and answer once what changed is RUNNING.

        Changed means since the previous reload request (or the start), whoever applied it: the
        watcher may have found the edited file a moment before the request came. A version that a
        loader's blacklist ended or brought back counts too.
        """
        started = time.monotonic()
        outcome = await self.load()
        file_changed, self._changes_answered = self.changes != self._changes_answered, self.changes
        # Both waits share the one deadline: replicas following the loaders need not use it up
        # before the deployments the file changed are waited for.
        waits = [self.loaders.poll(wait_seconds)]
        if file_changed:
            waits.append(self.wait_ready(wait_seconds))
        # On a busy machine one step of a wait (a call to Serve's controller) can take many
        # seconds; the answer comes at the deadline all the same, and the waits finish behind it.
        remaining = max(0.0, wait_seconds - (time.monotonic() - started))
        waiting = asyncio.ensure_future(asyncio.gather(*waits))
        waiting.add_done_callback(retrieve_outcome)
        try:
            polled, *_ = await asyncio.wait_for(asyncio.shield(waiting), remaining)
        except TimeoutError:
            polled = False
        return polled or file_changed, outcome.error

    def mark_answered(self) -> None:
        """What is applied now counts as known: the next reload answers 200 unless something changes."""
        self._changes_answered = self.changes

    async def load(self) -> ReloadOutcome:
        """Apply config.json if it changed since the last load; what changed, or why nothing was applied."""
        outcome = await self._load()
        if outcome.changed:
            self.changes += 1
        return outcome

    async def _load(self) -> ReloadOutcome:
        async with self._lock:
            path = Path(self.settings.config_path)
            try:
                checksum = hashlib.md5(path.read_bytes()).hexdigest()
            except OSError as exc:
                return await self._failed(f"{path}: cannot be read ({exc.strerror}); expected an OVMS config.json")
            if checksum == self.state.checksum:
                if self.state.load_error is not None:  # the watcher already found this file broken
                    return ReloadOutcome(changed=False, error=self.state.load_error)
                return ReloadOutcome(changed=await self._refresh_loaders())
            try:
                config = load_config(path)
            except ConfigError as exc:
                self.state.checksum = checksum  # report it once, not on every poll
                return await self._failed("; ".join(exc.errors))
            self.state.checksum, self.state.config, self.state.load_error = checksum, config, None
            recovering = self.state.plan is None
            before = self.state.plan or await self._recovered()
            names = before.node_names() if before is not None else {}
            plan = plan_config(config, config_folder(path), self.settings.plan, names)
            changed = await self._apply(plan, before, recovering)
            return ReloadOutcome(changed=changed)

    async def _failed(self, error: str) -> ReloadOutcome:
        log.error("config %s not applied: %s", self.settings.config_path, error)
        if error != self.state.load_error:
            self.state.load_error = error
            self.revision.publish()
        return ReloadOutcome(changed=False, error=error)

    async def _apply(self, plan: Plan, before: Plan | None, recovering: bool) -> bool:
        """Deploy what changed since ``before``; True if any deployment was added, replaced or deleted.
        ``recovering``: ``before`` is what a previous incarnation of the actor left running."""
        deploy, delete = plan.changes(before)
        for error in await self.loaders.apply(plan):
            plan.errors.append(error)
        # What the previous incarnation left unrouted is unknown after a restart: open every route again.
        routed = set() if recovering or before is None else set(before.deployments) - self.state.unrouted
        if deploy:
            await self.deployer.deploy([p if p.name in routed else replace(p, route_prefix=None) for p in deploy])
        if delete:
            await self.deployer.delete(delete)
            self.state.leaving |= set(delete)
        self.state.leaving -= {p.name for p in deploy}
        self.state.unrouted = {n for n, p in plan.deployments.items() if p.route_prefix and n not in routed}
        self._retire(before, plan)
        self.state.plan = plan
        for error in plan.errors:
            log.error("config entry skipped: %s", error)
        log.info(
            "config applied: %d deployments (%d deployed, %d deleted, %d unchanged)",
            len(plan.deployments),
            len(deploy),
            len(delete),
            len(plan.deployments) - len(deploy),
        )
        self.state.starting = (self.state.starting - set(delete)) | {p.name for p in deploy}
        for name in delete:
            self.state.reconfigured.pop(name, None)
        self._note_reconfigured(before, deploy)
        self._bridge(before, plan)
        self._remember()
        self.revision.publish()
        return bool(deploy or delete)

    def _note_reconfigured(self, before: Plan | None, deploy: list[Planned]) -> None:
        """For each runner deployed, the pipelines it changes (all of them when it is new)."""
        for planned in deploy:
            if planned.parts:
                old = before.deployments.get(planned.name) if before is not None else None
                was = old.parts if old is not None else {}
                changed = {name for name, print_ in planned.parts.items() if was.get(name) != print_}
                self.state.reconfigured[planned.name] = self.state.reconfigured.get(planned.name, set()) | changed

    def _loading(self) -> frozenset[str]:
        plan = self.state.plan or Plan()
        return frozenset(
            name
            for name, deployment in plan.servables.items()
            if deployment in self.state.starting
            and (deployment not in self.state.reconfigured or name in self.state.reconfigured[deployment])
        )

    def _remember(self) -> None:
        plan = self.state.plan or Plan()
        self.memory.write(
            {
                "deployments": {p.name: [p.kind, p.fingerprint] for p in plan.deployments.values()},
                "node_names": plan.node_names(),
                "retired": self.state.retired,
                "retired_pipelines": sorted(self.state.retired_pipelines),
            }
        )

    async def _recovered(self) -> Plan | None:
        """After a restart (Ray restarts this actor if its process dies), what Serve still runs from
        before, so that only what changed meanwhile is redeployed; None on a first start."""
        record = self.memory.read()
        deployments = record.get("deployments", {})
        if not deployments:
            return None
        statuses = await self.deployer.statuses(list(deployments))
        existing = {name for name, status in statuses.items() if status != "DELETING"}
        self.state.starting |= {name for name in existing if statuses[name] != "RUNNING"}
        self.state.retired = {name: tuple(versions) for name, versions in record.get("retired", {}).items()}
        self.state.retired_pipelines = set(record.get("retired_pipelines", []))
        log.warning("config actor restarted: %d deployments of its previous incarnation still run", len(existing))
        return Plan(
            deployments={
                # Without arguments: a remembered entry is only compared by fingerprint, never deployed.
                name: Planned(name, kind, fingerprint)
                for name, (kind, fingerprint) in deployments.items()
                if name in existing
            },
            shared_nodes=record.get("node_names", {}),
        )

    def _bridge(self, before: Plan | None, plan: Plan) -> None:
        """Bridge the models this load added. Not on the first load: then everything starts at once,
        and the ingress would compile the whole config."""
        if before is None:
            return
        added = {name for name, deployment in plan.servables.items() if deployment not in before.deployments}
        self.state.bridges = self._bridging(self.state.bridges | added)

    def _bridging(self, names: set[str]) -> set[str]:
        """Those of ``names`` still bridged: bridgeable models of the plan whose deployment is starting."""
        plan = self.state.plan or Plan()
        return {name for name in names if name in plan.bridgeable and plan.servables[name] in self.state.starting}

    def _retire(self, before: Plan | None, plan: Plan) -> None:
        """Names that left the config stay known, every version END, as OVMS reports them."""
        if before is not None:
            for name in before.servables.keys() - plan.servables.keys():
                self.state.retired[name] = before.versions.get(name, (1,)) or (1,)
                if is_runner(before.servables[name]) or before.servables[name].startswith("pipeline."):
                    self.state.retired_pipelines.add(name)
        for name in plan.servables:
            self.state.retired.pop(name, None)
            self.state.retired_pipelines.discard(name)

    async def _refresh_loaders(self) -> bool:
        """Between config changes, version folders of loader-backed models may still come and go."""
        plan = self.state.plan
        if self.state.config is None or plan is None:
            return False
        loaders, models = loader_specs(self.state.config, config_folder(self.settings.config_path))
        if (loaders, models) == (plan.loaders, plan.loader_models):
            return False
        plan.loaders, plan.loader_models = loaders, models
        await self.loaders.apply(plan)
        return True

    # ----- what the ingress sees ----------------------------------------------------------------

    def catalog(self) -> Catalog:
        plan = self.state.plan or Plan()
        errors = tuple(plan.errors) + ((self.state.load_error,) if self.state.load_error else ())
        bridges = {name: plan.bridgeable[name] for name in self._bridging(self.state.bridges)}
        return Catalog(
            self.revision.current,
            dict(plan.servables),
            dict(plan.versions),
            dict(self.state.retired),
            errors,
            frozenset(self.state.starting),
            bridges,
            frozenset(self.state.retired_pipelines),
            self._loading(),
        )

    async def wait_for_change(self, seen: int | None, timeout: float, heartbeat: bool = True) -> Catalog:
        """The catalog once its revision differs from ``seen``, or after ``timeout`` (an ingress's
        long-poll). Only the ingress's polls are ``heartbeat``s: the pipeline runner follows the
        catalog too, but it is one of the deployments this actor made, not the app."""
        if not heartbeat:
            await self.revision.wait(seen, timeout)
            return self.catalog()
        self._polls_waiting += 1
        try:
            await self.revision.wait(seen, timeout)
        finally:
            self._polls_waiting -= 1
            self._last_ingress_call = self.clock()
        return self.catalog()

    async def check_ready(self) -> None:
        """Move deployments that reached RUNNING out of ``starting`` and open their routes; forget
        deleted ones Serve no longer has."""
        if not self.state.starting and not self.state.unrouted and not self.state.leaving:
            return
        statuses = await self.deployer.statuses(sorted(self.state.starting | self.state.unrouted | self.state.leaving))
        self.state.leaving &= statuses.keys()
        running = {name for name, status in statuses.items() if status == "RUNNING"}
        await self._open_routes(running & self.state.unrouted)
        if running & self.state.starting:
            self.state.starting -= running
            for name in running:
                self.state.reconfigured.pop(name, None)
            self.revision.publish()

    async def _open_routes(self, names: set[str]) -> None:
        plan = self.state.plan
        if not names or plan is None:
            return
        await self.deployer.deploy([plan.deployments[name] for name in sorted(names)])
        self.state.unrouted -= names
        log.info("routes open: %s", ", ".join(plan.deployments[name].route_prefix or name for name in sorted(names)))

    async def wait_ready(self, timeout: float) -> bool:
        """Until every deployment of the current config is RUNNING and every deleted one is gone
        (until then the front door may still route a removed name to it), or ``timeout``."""
        deadline = self.clock() + timeout
        while (self.state.starting or self.state.leaving) and self.clock() < deadline:
            await self.check_ready()
            if self.state.starting or self.state.leaving:
                await asyncio.sleep(0.2)
        return not self.state.starting

    # ----- the app going away -------------------------------------------------------------------

    def app_gone(self) -> bool:
        """No ingress is polling, and none has for ``idle_shutdown_seconds`` (since start, if none ever has)."""
        if self._polls_waiting:
            return False
        now = self.clock()
        if self._last_ingress_call is None:
            return now - self._started_at > NEVER_CALLED_GRACE_SECONDS
        return now - self._last_ingress_call > self.settings.idle_shutdown_seconds

    async def shutdown(self) -> None:
        """Delete every deployment this config made, then deinitialise the loaders."""
        plan = self.state.plan
        if plan is not None and plan.deployments:
            await self.deployer.delete(list(plan.deployments))
        self.state.plan = Plan()
        self._remember()
        await self.loaders.shutdown()
        self.revision.publish()
