"""Two-phase unloads: a leaving version is drained by every live replica before it is unloaded,
so a transition seen from outside is never contradicted by a stale replica."""

from __future__ import annotations

import asyncio

from loaders import actor as actor_module
from loaders.actor import LoaderService
from loaders.manager import LoaderManager
from loaders.specs import LoaderSpec
from tests.unit._loaders_support import (
    AVAILABLE,
    END_OK,
    current,
    disable,
    hook_calls,
    model_spec,
    sample_spec,
    states,
    write_recording_loader,
)


def recording(tmp_path) -> LoaderSpec:
    write_recording_loader(tmp_path)
    return LoaderSpec("rec", "recording.py", config_dir=str(tmp_path))


def test_gated_unload_waits_for_the_drain_then_unloads_once(dummy, clock, tmp_path):
    manager = LoaderManager(clock, gate_unloads=True)
    manager.apply([recording(tmp_path)], [model_spec(dummy, loader="rec")])
    disable(dummy, 1)
    manager.poll()
    snap = manager.snapshot("dummy")
    assert snap.draining == (1,)
    assert states(manager)[1] == AVAILABLE  # nothing visible changes until replicas have drained
    assert manager.buffers("dummy", 1) is None  # a replica starting now does not load it
    assert hook_calls(manager, hook="unload_model") == []
    manager.poll()  # polling again while draining neither unloads nor repeats the drain
    assert manager.snapshot("dummy").generation == snap.generation

    asked = []
    manager.finish_drains(lambda name, generation: asked.append((name, generation)) or False)
    assert asked == [("dummy", snap.generation)] and states(manager)[1] == AVAILABLE
    manager.finish_drains(lambda name, generation: True)
    assert states(manager)[1] == END_OK and manager.snapshot("dummy").draining == ()
    assert hook_calls(manager, hook="unload_model") == [("unload_model", "dummy", 1)]


def test_ungated_manager_unloads_at_once(dummy, clock, tmp_path):
    manager = LoaderManager(clock)
    manager.apply([recording(tmp_path)], [model_spec(dummy, loader="rec")])
    disable(dummy, 1)
    manager.poll()
    assert states(manager)[1] == END_OK


def test_service_waits_for_every_live_replica(dummy, clock):
    async def scenario():
        service = LoaderService([], [], poll_wait_seconds=0, clock=clock)
        await service.apply([sample_spec()], [model_spec(dummy)])
        first = await service.wait_for_change("dummy", None, timeout=0, replica="a")
        await service.wait_for_change("dummy", None, timeout=0, replica="b")  # b has seen nothing yet
        disable(dummy, 1)
        await service.poll_now()
        draining = await current(service)
        assert draining.draining == (1,) and draining.generation != first.generation
        await service.wait_for_change("dummy", draining.generation, timeout=0, replica="a")
        assert (await current(service)).draining == (1,)  # b has not acknowledged
        await service.wait_for_change("dummy", draining.generation, timeout=0, replica="b")
        statuses = {s.version: (s.state.name, s.error_code.value) for s in (await current(service)).statuses}
        assert statuses[1] == END_OK

    asyncio.run(scenario())


def test_service_stops_waiting_for_a_dead_replica(dummy, clock, monkeypatch):
    monkeypatch.setattr(actor_module, "REPLICA_GRACE_SECONDS", 0.0)

    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=0, clock=clock)
        await service.wait_for_change("dummy", None, timeout=0, replica="gone")
        disable(dummy, 1)
        await asyncio.sleep(0.01)  # the replica's last contact is now past the (zero) grace period
        await service.poll_now()
        assert (await current(service)).draining == ()

    asyncio.run(scenario())


def test_a_replica_that_leaves_is_not_waited_for(dummy, clock):
    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=0, clock=clock)
        await service.wait_for_change("dummy", None, timeout=0, replica="r")
        disable(dummy, 1)
        await service.poll_now()
        assert (await current(service)).draining == (1,)
        await service.leave("dummy", "r")
        assert (await current(service)).draining == ()

    asyncio.run(scenario())


class Replica:
    """A model replica's long-poll loop, as app/deployments.LoaderFollower runs it: apply each
    snapshot, then acknowledge it with the next call. Applying takes ``apply_seconds`` (requests in
    flight end, a version compiles), so the acknowledgement comes later than the snapshot."""

    def __init__(self, service: LoaderService, replica: str, apply_seconds: float = 0.0) -> None:
        self.applied: list = []
        self.apply_seconds = apply_seconds
        self.task = asyncio.create_task(self._follow(service, replica, "dummy"))

    async def _follow(self, service: LoaderService, replica: str, name: str) -> None:
        seen = None
        while True:
            snapshot = await service.wait_for_change(name, seen, timeout=30, replica=replica)
            await asyncio.sleep(self.apply_seconds)
            self.applied.append(snapshot)
            seen = snapshot.generation

    def serves(self) -> dict[int, tuple[str, str]]:
        """What this replica reports now: the statuses of the last snapshot it applied."""
        return {s.version: (s.state.name, s.error_code.value) for s in self.applied[-1].statuses}

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def test_an_immediate_poll_returns_once_every_replica_serves_the_unload(dummy, clock):
    """POST /v1/config/reload with the watcher off: the version is END in every replica when it answers."""

    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=0, clock=clock)
        replicas = [Replica(service, "a", apply_seconds=0.01), Replica(service, "b")]
        await asyncio.sleep(0)  # both replicas have made their first call
        disable(dummy, 1)
        changed = await asyncio.wait_for(service.poll_now(timeout=30), 10)
        served = [replica.serves() for replica in replicas]
        quiet = await service.poll_now(timeout=30)
        for replica in replicas:
            await replica.stop()
        return changed, served, quiet

    changed, served, quiet = asyncio.run(scenario())
    assert changed and served == [{1: END_OK, 2: AVAILABLE}] * 2
    assert not quiet  # nothing changed since: the next reload reports no change


def test_an_immediate_poll_waits_for_an_unload_a_poll_just_before_began(dummy, clock):
    """The watcher may begin an unload a moment before a reload: the reload still answers after it."""

    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=0, clock=clock)
        await service.wait_for_change("dummy", None, timeout=0, replica="r")
        disable(dummy, 1)
        await service.poll_now()  # no wait: the unload waits for replica r to drain
        first = await current(service)
        reload = asyncio.create_task(service.poll_now(timeout=30))
        await asyncio.sleep(0)
        waiting = not reload.done()
        replica = Replica(service, "r")  # r now drains and acknowledges
        changed = await asyncio.wait_for(reload, 10)
        served = replica.serves()
        await replica.stop()
        return first.draining, waiting, changed, served

    draining, waiting, changed, served = asyncio.run(scenario())
    assert draining == (1,) and waiting  # the reload found the unload waiting for r
    assert changed and served == {1: END_OK, 2: AVAILABLE}


def test_an_immediate_poll_stops_waiting_at_its_timeout(dummy, clock):
    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=0, clock=clock)
        await service.wait_for_change("dummy", None, timeout=0, replica="silent")  # never acknowledges
        disable(dummy, 1)
        changed = await asyncio.wait_for(service.poll_now(timeout=0.05), 10)
        return changed, await current(service)

    changed, snapshot = asyncio.run(scenario())
    assert changed and snapshot.draining == (1,)  # still waiting for the silent replica's drain


class _Ending(LoaderService):
    ended = False

    def _exit(self) -> None:
        self.ended = True


def test_the_actor_ends_once_every_replica_has_left(dummy, clock, tmp_path, monkeypatch):
    monkeypatch.setattr(actor_module, "REPLICA_GRACE_SECONDS", 0.0)

    async def scenario():
        service = _Ending(
            [recording(tmp_path)],
            [model_spec(dummy, loader="rec")],
            poll_wait_seconds=0,
            clock=clock,
            idle_shutdown_seconds=0.01,
        )
        loader = service._manager.loader("rec")
        assert not await service.idle_check()  # no replica ever came: not the app going away
        await service.wait_for_change("dummy", None, timeout=0, replica="r")
        await service.leave("dummy", "r")
        assert not await service.idle_check()  # empty from now on, not yet for the idle period
        await asyncio.sleep(0.02)
        assert await service.idle_check() and service.ended
        return loader.calls

    calls = asyncio.run(scenario())
    assert calls[-2:] == [("retire_model", "dummy"), ("loader_deinit",)]


def test_a_replica_coming_back_keeps_the_actor(dummy, clock, tmp_path):
    async def scenario():
        service = _Ending(
            [recording(tmp_path)],
            [model_spec(dummy, loader="rec")],
            poll_wait_seconds=0,
            clock=clock,
            idle_shutdown_seconds=0.01,
        )
        await service.wait_for_change("dummy", None, timeout=0, replica="old")
        await service.leave("dummy", "old")
        assert not await service.idle_check()
        await service.wait_for_change("dummy", None, timeout=0, replica="new")  # a redeploy's replica
        await asyncio.sleep(0.02)
        assert not await service.idle_check() and not service.ended

    asyncio.run(scenario())


def test_shutdown_unloads_before_it_retires_and_deinitialises(dummy, clock, tmp_path):
    manager = LoaderManager(clock, gate_unloads=True)
    manager.apply([recording(tmp_path)], [model_spec(dummy, loader="rec", versions=(1, 2))])
    disable(dummy, 2)
    manager.poll()  # version 2 is draining when the app goes away
    loader = manager.loader("rec")
    manager.shutdown()
    assert loader.calls[-4:] == [
        ("unload_model", "dummy", 2),
        ("unload_model", "dummy", 1),
        ("retire_model", "dummy"),
        ("loader_deinit",),
    ]


def test_removing_a_model_from_the_config_unloads_before_it_retires(dummy, clock, tmp_path):
    manager = LoaderManager(clock, gate_unloads=True)
    loader_spec = recording(tmp_path)
    manager.apply([loader_spec], [model_spec(dummy, loader="rec", versions=(1, 2))])
    disable(dummy, 2)
    manager.poll()  # version 2 is draining when a reload removes the model
    loader = manager.loader("rec")
    manager.apply([loader_spec], [])
    assert loader.calls[-3:] == [("unload_model", "dummy", 1), ("unload_model", "dummy", 2), ("retire_model", "dummy")]
    assert {s.version: s.state.name for s in manager.statuses("dummy")} == {1: "END", 2: "END"}
