"""A loader-backed model in one replica follows the loader manager's snapshots (no Ray)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.config import parse_config
from app.errors import ModelVersionNotLoadedAnymore, ModelVersionNotLoadedYet
from app.inference import InferRequest
from app.model import ModelServable
from loaders.manager import LoaderManager
from tests.unit._loaders_support import IR_OPTIONS, disable, model_spec, sample_spec


@pytest.fixture
def setup(dummy, clock):
    manager = LoaderManager(clock, gate_unloads=True)
    manager.apply([sample_spec()], [model_spec(dummy)])
    options = {"loader_name": "sample", **IR_OPTIONS}
    config = parse_config(
        {
            "model_config_list": [
                {
                    "config": {
                        "name": "dummy",
                        "base_path": str(dummy),
                        "custom_loader_options": options,
                        "model_version_policy": {"all": {}},
                    }
                }
            ]
        }
    )
    return manager, ModelServable(config.models[0])


async def follow(manager: LoaderManager, model: ModelServable) -> None:
    async def fetch(version):
        return manager.buffers("dummy", version)

    await model.follow(manager.snapshot("dummy"), fetch)


def request(version=None) -> InferRequest:
    return InferRequest("dummy", version, {"b": np.zeros((1, 10), np.float32)})


def test_serves_what_the_loader_loaded(setup):
    manager, model = setup

    async def scenario():
        with pytest.raises(ModelVersionNotLoadedYet):  # before the first snapshot
            await model.infer(request())
        await follow(manager, model)
        return await model.infer(request(1)), await model.infer(request())

    one, default = asyncio.run(scenario())
    assert one.model_version == 1 and default.model_version == 2
    assert [s.version for s in model.statuses()] == [1, 2]


def test_draining_version_is_refused_at_once_and_released_after_in_flight_requests(setup, dummy):
    manager, model = setup

    async def scenario():
        await follow(manager, model)
        disable(dummy, 1)
        manager.poll()
        in_flight = asyncio.create_task(model.infer(request(1)))
        await asyncio.sleep(0)  # the request is admitted before the replica learns of the drain
        assert not in_flight.done()
        await follow(manager, model)
        assert in_flight.done()  # follow returned only after the admitted request finished
        with pytest.raises(ModelVersionNotLoadedAnymore):
            await model.infer(request(1))
        return await in_flight

    answered = asyncio.run(scenario())
    assert answered.model_version == 1  # admitted before the drain: it finished, not cut off
    manager.finish_drains(lambda name, generation: True)
    assert {s.version: s.state.name for s in manager.statuses("dummy")} == {1: "END", 2: "AVAILABLE"}


def test_revoked_blacklist_serves_again(setup, dummy):
    manager, model = setup

    async def scenario():
        await follow(manager, model)
        disable(dummy, 1)
        manager.poll()
        manager.finish_drains(lambda name, generation: True)
        await follow(manager, model)
        with pytest.raises(ModelVersionNotLoadedAnymore):
            await model.infer(request(1))
        disable(dummy, 1, text="")
        manager.poll()
        await follow(manager, model)
        return await model.infer(request(1))

    assert asyncio.run(scenario()).model_version == 1


def test_a_version_shows_loading_in_a_replica_until_it_is_compiled_there(setup):
    """The loader says AVAILABLE at once; the replica must not say so (and answer ready) before
    it can serve the version, or a ready check passes and the inference after it gets 404."""
    manager, model = setup
    seen = {}

    async def scenario():
        async def fetch(version):
            seen[version] = {s.version: s.state.name for s in model.statuses()}[version]
            return manager.buffers("dummy", version)

        await model.follow(manager.snapshot("dummy"), fetch)
        return await model.infer(request(1))

    response = asyncio.run(scenario())
    assert seen and set(seen.values()) == {"LOADING"}
    assert {s.state.name for s in model.statuses()} == {"AVAILABLE"} and response.model_version == 1
