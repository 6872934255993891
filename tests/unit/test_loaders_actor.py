"""The loader actor's body without Ray: forwarding, long-poll, background polling, creation options."""

from __future__ import annotations

import asyncio
import time

import pytest

from loaders import actor as actor_module
from loaders.actor import LoaderActor, LoaderService, get_or_create_loader_actor
from loaders.specs import LoaderSpec
from tests.unit._loaders_support import (
    AVAILABLE,
    END_OK,
    current,
    disable,
    model_spec,
    sample_spec,
    write_recording_loader,
)


def by_version(statuses) -> dict[int, tuple[str, str]]:
    return {s.version: (s.state.name, s.error_code.value) for s in statuses}


def test_forwards_to_the_manager(dummy, clock):
    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=0, clock=clock)
        assert by_version((await current(service)).statuses) == {1: AVAILABLE, 2: AVAILABLE}
        assert (await service.buffers("dummy", 1)).weights
        disable(dummy, 1)
        assert await service.poll_now()  # no replica to wait for: unloaded at once
        assert by_version((await current(service)).statuses) == {1: END_OK, 2: AVAILABLE}
        assert await service.buffers("dummy", 1) is None
        errors = await service.apply([sample_spec()], [model_spec(dummy, loader="missing")])
        assert [e.code for e in errors] == ["CUSTOM_LOADER_NOT_PRESENT"]

    asyncio.run(scenario())


def test_long_poll_returns_at_once_for_a_new_replica_then_on_change(dummy, clock):
    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=0, clock=clock)
        first = await service.wait_for_change("dummy", None)
        assert by_version(first.statuses) == {1: AVAILABLE, 2: AVAILABLE}
        waiting = asyncio.create_task(service.wait_for_change("dummy", first.generation, timeout=60))
        await asyncio.sleep(0)  # let the replica's long-poll start waiting
        assert not waiting.done()
        disable(dummy, 2)
        await service.poll_now()
        second = await waiting
        assert second.generation != first.generation
        assert by_version(second.statuses) == {1: AVAILABLE, 2: END_OK}
        unchanged = await service.wait_for_change("dummy", second.generation, timeout=0)
        assert unchanged.generation == second.generation

    asyncio.run(scenario())


def test_background_poll_applies_blacklist(dummy, clock):
    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=0.01, clock=clock)
        seen = (await current(service)).generation
        disable(dummy, 1)
        snap = await service.wait_for_change("dummy", seen, timeout=30)
        assert by_version(snap.statuses)[1] == END_OK
        await service.shutdown()

    asyncio.run(scenario())


def test_shutdown_deinits_loaders(dummy, clock, tmp_path):
    write_recording_loader(tmp_path)
    rec = LoaderSpec("rec", "recording.py", config_dir=str(tmp_path))

    async def scenario():
        service = LoaderService([rec], [model_spec(dummy, loader="rec", versions=(1,))], 0, clock)
        loader = service._manager.loader("rec")
        await service.shutdown()
        return loader.calls

    assert asyncio.run(scenario())[-2:] == [("retire_model", "dummy"), ("loader_deinit",)]


def test_actor_class_options():
    assert LoaderActor._default_options == {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}


def test_get_or_create_uses_a_named_detached_actor(monkeypatch):
    calls = []

    class FakeActorClass:
        def options(self, **options):
            calls.append(options)
            return self

        def remote(self, *args):
            calls.append(args)
            return "handle"

    monkeypatch.setattr(actor_module, "LoaderActor", FakeActorClass())
    assert get_or_create_loader_actor([], [], 2.0) == "handle"
    assert calls == [
        {
            "name": "rayvino-loader",
            "namespace": "rayvino",
            "lifetime": "detached",
            "get_if_exists": True,
            "resources": {"node:__internal_head__": 0.001},
        },  # on the head node, as Serve's controller
        ([], [], 2.0, time.time, 0.0),
    ]


@pytest.mark.parametrize("period", [0, -1])
def test_zero_period_disables_polling(dummy, clock, period):
    async def scenario():
        service = LoaderService([sample_spec()], [model_spec(dummy)], poll_wait_seconds=period, clock=clock)
        await current(service)  # what starts the polling of a restarted actor
        return service._poll_task

    assert asyncio.run(scenario()) is None
