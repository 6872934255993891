"""The loader actor: one named, detached Ray actor around LoaderManager. Every Ray call of
``loaders`` lives in this module.

``LoaderService`` is the actor's body in plain asyncio (unit-testable without Ray);
``LoaderActor`` is the same class made a Ray actor. One instance per cluster owns every loader,
so each hook runs once per transition, not once per replica.

How the server and replicas use it:

* The config actor calls ``get_or_create_loader_actor()`` and then ``apply(loaders, models)``
  after every config change (idempotent; returns the config errors). ``POST /v1/config/reload``
  calls ``poll_now(timeout)``: it checks every blacklist at once, as OVMS's reload does, and
  returns once every live replica serves the outcome (see unloads below), so a version
  blacklisted a moment ago is END when the reload answers. ``/v1/config`` shows what the model
  replicas report, which is what they took from ``wait_for_change``.
* A model replica keeps one long-poll open: ``snap = await actor.wait_for_change.remote(name,
  seen)``; it returns at once if the model's generation differs from ``seen`` (``None`` for a new
  replica), else when it changes or after ``timeout``. For each AVAILABLE version the replica
  lacks, it fetches ``buffers(name, version)`` and compiles them; for each version no longer
  AVAILABLE it stops admitting requests at once and frees its copy when its in-flight requests
  end. Then it waits again with ``seen = snap.generation``. Compare generations with ``!=``.
* Unloads wait for replicas (the guarantee that no stale replica answers after a blacklist):
  a leaving version is first *draining* in the snapshot while its status is still AVAILABLE;
  each replica stops admitting requests to it, lets its in-flight ones finish, then calls
  ``wait_for_change`` again with the new generation and its ``replica`` id, which acknowledges
  the drain. Only when every live replica has acknowledged does the version go UNLOADING ->
  ``unload_model`` -> END. A replica that stops calling for ``REPLICA_GRACE_SECONDS`` past its
  last long-poll is taken for dead and not waited on; ``leave`` removes one at shutdown.
* Restart: Ray re-runs ``__init__`` with the creation arguments (the first config's specs),
  which inits the loaders and loads the models again. Generations start at ``time.time_ns()``,
  so they jump past every generation replicas have seen and replicas re-sync; the server sees
  ``incarnation()`` change and re-sends ``apply`` with the current specs.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import ray

from app.logs import show_lifecycle_logs
from app.polling import Revision
from app.storage import local_base, use_node
from loaders.base import Clock, ModelBuffers
from loaders.errors import CustomLoaderConfigError
from loaders.journal import CrashJournal, HookCall
from loaders.manager import LoaderManager, ModelSnapshot
from loaders.specs import ACTOR_NAME, NAMESPACE, LoaderActorConfig, LoaderSpec, ModelSpec

log = logging.getLogger("rayvino.loaders")


T = TypeVar("T")

# A replica that has not called for this long after its last long-poll ended is taken for dead.
REPLICA_GRACE_SECONDS = 5.0


@dataclass
class _Replica:
    acked: int | None  # the generation it last applied
    last_contact: float  # loop time of its last call's start or end
    waiting: bool  # inside a long-poll now


class LoaderService:
    """LoaderManager behind async methods, with a poll loop every ``poll_wait_seconds`` (0: off)."""

    def __init__(
        self,
        loaders: Iterable[LoaderSpec] = (),
        models: Iterable[ModelSpec] = (),
        poll_wait_seconds: float = 1.0,
        clock: Clock = time.time,
        idle_shutdown_seconds: float = 0.0,
        local_base: Callable[[str, int], str] | None = None,
    ) -> None:
        """``idle_shutdown_seconds`` > 0: once every replica that followed it has left (the app was
        deleted) and none has come back for that long, deinit every loader and end the actor."""
        self._incarnation = time.time_ns()
        journal, crashed = self._crash_journal()
        self._manager = LoaderManager(
            clock,
            first_generation=self._incarnation,
            gate_unloads=True,
            journal=journal,
            crashed=crashed,
            local_base=local_base,
        )
        self._replicas: dict[str, dict[str, _Replica]] = {}
        self._manager.apply(list(loaders), list(models))  # errors are logged; apply() returns them
        self._poll_wait = poll_wait_seconds
        self._idle_shutdown = idle_shutdown_seconds
        self._had_replicas = False
        self._empty_since: float | None = None
        self._revision = Revision(self._manager.generation)  # the long-polls wait on it
        self._poll_task: asyncio.Task | None = None
        self._start_polling()

    # ----- driving -----------------------------------------------------------------------------

    async def apply(self, loaders: list[LoaderSpec], models: list[ModelSpec]) -> list[CustomLoaderConfigError]:
        """Make the config current; returns its loader errors (the first is /v1/config/reload's)."""
        errors = self._run(self._manager.apply, loaders, models)
        self._run(self._manager.finish_drains, self._drained)
        return errors

    async def poll_now(self, timeout: float = 0.0) -> bool:
        """Check every version's blacklist at once (``POST /v1/config/reload``); whether any changed.

        Then wait, up to ``timeout`` seconds, until every live replica serves what the poll decided
        (unloads included): a version blacklisted a moment ago is END, and no replica answers for it.
        """
        before = self._manager.generations()
        self._run(self._manager.poll)
        self._run(self._manager.finish_drains, self._drained)
        after = self._manager.generations()
        # Also the drains a background poll began just before: the reload answers once they are done.
        settling = {name for name in after if after[name] != before.get(name) or self._manager.snapshot(name).draining}
        await self._revision.wait_until(lambda: all(self._serves_current(name) for name in settling), timeout)
        return self._manager.generations() != before

    async def shutdown(self) -> None:
        """Unload and retire every model and deinit every loader; stop polling."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            self._poll_task = None
        self._run(self._manager.shutdown)

    # ----- reading -----------------------------------------------------------------------------

    async def buffers(self, name: str, version: int) -> ModelBuffers | None:
        """The version's buffers while it is AVAILABLE, else None."""
        return self._manager.buffers(name, version)

    async def incarnation(self) -> int:
        """Changes when the actor restarts: the server then re-sends ``apply``."""
        return self._incarnation

    async def wait_for_change(
        self, name: str, seen: int | None, timeout: float = 30.0, replica: str | None = None
    ) -> ModelSnapshot:
        """The model's snapshot once its generation differs from ``seen``, or after ``timeout``.

        A replica passes its id: the call then also says it has applied ``seen`` and drained
        what that snapshot stopped serving, which may complete waiting unloads.
        """
        self._start_polling()
        contact = self._contact(name, replica, seen, waiting=True)
        self._run(self._manager.finish_drains, self._drained)
        if contact is not None:
            self._revision.wake()  # a replica's acknowledgement: poll_now may be waiting for it
        try:
            await self._revision.wait_until(lambda: self._manager.model_generation(name) != seen, timeout)
            return self._manager.snapshot(name)
        finally:
            if contact is not None:
                contact.waiting, contact.last_contact = False, asyncio.get_running_loop().time()

    async def leave(self, name: str, replica: str) -> None:
        """A replica shuts down: stop waiting for it."""
        self._replicas.get(name, {}).pop(replica, None)
        self._run(self._manager.finish_drains, self._drained)
        self._revision.wake()  # one replica fewer to wait for

    def _contact(self, name: str, replica: str | None, seen: int | None, waiting: bool) -> _Replica | None:
        if replica is None:
            return None
        now = asyncio.get_running_loop().time()
        contact = self._replicas.setdefault(name, {}).setdefault(replica, _Replica(seen, now, waiting))
        contact.acked, contact.last_contact, contact.waiting = seen, now, waiting
        self._had_replicas = True
        return contact

    def _live_replicas(self, now: float) -> int:
        return sum(
            1
            for contacts in self._replicas.values()
            for c in contacts.values()
            if c.waiting or now - c.last_contact <= REPLICA_GRACE_SECONDS
        )

    async def idle_check(self) -> bool:
        """Shut down if the app is gone: every replica left and none came back for the idle period."""
        if self._idle_shutdown <= 0 or not self._had_replicas:
            return False
        now = asyncio.get_running_loop().time()
        if self._live_replicas(now):
            self._empty_since = None
            return False
        if self._empty_since is None:
            self._empty_since = now
        if now - self._empty_since < self._idle_shutdown:
            return False
        log.info("every replica left %.0f s ago: the app is gone; deinitialising the loaders", self._idle_shutdown)
        await self.shutdown()
        self._exit()
        return True

    def _exit(self) -> None:
        """End the process that hosts this service (the Ray actor overrides it)."""

    def _crash_journal(self) -> tuple[CrashJournal | None, HookCall | None]:
        """The journal of hook calls, and the call a previous process died in (the Ray actor's)."""
        return None, None

    def _drained(self, name: str, generation: int) -> bool:
        """Every live replica of ``name`` has acknowledged ``generation`` (dead ones are dropped)."""
        now = asyncio.get_running_loop().time()
        replicas = self._replicas.get(name, {})
        for replica_id, contact in list(replicas.items()):
            if not contact.waiting and now - contact.last_contact > REPLICA_GRACE_SECONDS:
                log.warning("replica %s of model '%s' stopped calling; not waiting for it", replica_id, name)
                del replicas[replica_id]
            elif contact.acked is None or contact.acked < generation:
                return False
        return True

    def _serves_current(self, name: str) -> bool:
        """No unload of the model waits for a drain, and every live replica has applied its snapshot."""
        snap = self._manager.snapshot(name)
        return not snap.draining and (snap.generation is None or self._drained(name, snap.generation))

    # ----- internals ---------------------------------------------------------------------------

    def _run(self, call: Callable[..., T], *args) -> T:
        """Run a manager call; wake the long-polls if it changed anything."""
        before = self._manager.generation
        try:
            return call(*args)
        finally:
            if self._manager.generation != before:
                self._revision.publish(self._manager.generation)

    def _start_polling(self) -> None:
        # __init__ may run outside the event loop; every entry point retries, so a restarted
        # actor polls again as soon as anyone (a replica's long-poll) calls it.
        if self._poll_task is not None or (self._poll_wait <= 0 and self._idle_shutdown <= 0):
            return
        try:
            self._poll_task = asyncio.get_running_loop().create_task(self._poll_loop())
        except RuntimeError:
            pass

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_wait if self._poll_wait > 0 else 1.0)
            try:
                if self._poll_wait > 0:
                    self._run(self._manager.poll)
                self._run(self._manager.finish_drains, self._drained)  # also when replicas died
                if await self.idle_check():
                    return
            except Exception:  # a bug must not stop blacklist polling for every model
                log.exception("loader poll failed")


class _RayLoaderService(LoaderService):
    def __init__(self, *args, **kwargs) -> None:
        show_lifecycle_logs()
        use_node(ray.get_runtime_context().get_node_id())  # models from object stores: this node's cache
        kwargs.setdefault("local_base", local_base)
        super().__init__(*args, **kwargs)

    def _crash_journal(self) -> tuple[CrashJournal | None, HookCall | None]:
        context = ray.get_runtime_context()
        # One journal per actor name and node (the actor is pinned to the head node); only a
        # restarted actor reads what its previous process was doing when it died.
        journal = CrashJournal(
            Path(tempfile.gettempdir())
            / "rayvino"
            / f"loader-{context.namespace}-{context.get_actor_name()}-{context.get_node_id()[:16]}.journal"
        )
        crashed = journal.take()
        if crashed is not None and not context.was_current_actor_reconstructed:
            crashed = None  # a previous cluster's, not this actor's
        return journal, crashed

    def _exit(self) -> None:
        # An intentional end: no restart. Called from the poll task, so kill rather than exit_actor.
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


LoaderActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_RayLoaderService)


def get_or_create_loader_actor(
    loaders: Iterable[LoaderSpec] = (),
    models: Iterable[ModelSpec] = (),
    poll_wait_seconds: float = 1.0,
    *,
    namespace: str = NAMESPACE,
    name: str = ACTOR_NAME,
    idle_shutdown_seconds: float = 0.0,
):
    """The cluster's loader actor, created with these specs if it does not exist yet.

    If it exists, the specs are ignored: call ``apply`` on the handle with the current ones.
    """
    # On the head node, as Serve's controller: a worker node that leaves must not take the loaders.
    options = dict(
        name=name,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        resources={"node:__internal_head__": 0.001},
    )
    return LoaderActor.options(**options).remote(
        list(loaders), list(models), poll_wait_seconds, time.time, idle_shutdown_seconds
    )


def loader_actor_for(config: LoaderActorConfig):
    """The loader actor ``config`` names: the running one, or a new one with its specs (a replica
    that starts after the actor ended, say once a redeploy replaced every replica)."""
    return get_or_create_loader_actor(
        config.loaders,
        config.models,
        config.poll_wait_seconds,
        namespace=config.namespace,
        name=config.name,
        idle_shutdown_seconds=config.idle_shutdown_seconds,
    )


async def shutdown_loader_actor(*, namespace: str = NAMESPACE, name: str = ACTOR_NAME) -> None:
    """Deinit every loader, then kill the actor (it is detached: nothing else ends it)."""
    try:
        actor = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return
    await actor.shutdown.remote()
    ray.kill(actor, no_restart=True)
