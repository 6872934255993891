"""A newly added model served from the ingress's process until its deployment runs (app/bridge.py)."""

from __future__ import annotations

import asyncio

import numpy as np

from app.bridge import BridgedServable
from app.config import parse_config
from app.inference import InferRequest, InferResponse
from app.status import ModelVersionState, VersionStatus
from tests import factory


class StartingDeployment:
    """The model's own deployment while its replica starts: LOADING, and it answers with a mark."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def statuses(self) -> list[VersionStatus]:
        return [VersionStatus(1, ModelVersionState.LOADING)]

    async def metadata(self, version: int | None) -> dict:
        self.calls.append("metadata")
        return {"name": "from the deployment"}

    async def infer(self, request: InferRequest) -> InferResponse:
        self.calls.append("infer")
        return InferResponse(request.model_name, 1, {"a": np.zeros((1, 10), np.float32)})


def model_config(base):
    return parse_config({"model_config_list": [{"config": {"name": "added", "base_path": str(base)}}]}).models[0]


def request() -> InferRequest:
    return InferRequest("added", None, {"b": np.full((1, 10), 2.0, np.float32)})


def test_the_bridge_compiles_the_model_here_and_serves_it(tmp_path):
    config = model_config(factory.write_dummy(tmp_path / "added", [1, 2]))

    async def scenario():
        deployment = StartingDeployment()
        bridge = BridgedServable(config, deployment)
        before = [s.state for s in await bridge.statuses()]
        response = await bridge.infer(request())  # waits for the compile, not for the deployment
        after = [(s.version, s.state) for s in await bridge.statuses()]
        metadata = await bridge.metadata(None)
        return before, response, after, metadata, deployment.calls

    before, response, after, metadata, calls = asyncio.run(scenario())
    assert before == [ModelVersionState.LOADING]
    assert response.model_version == 2 and np.array_equal(response.outputs["a"], np.full((1, 10), 4.0, np.float32))
    assert after == [(2, ModelVersionState.AVAILABLE)]
    assert metadata["name"] == "added" and metadata["versions"] == ["2"]
    assert calls == []


def test_a_model_this_process_cannot_compile_is_left_to_its_deployment(tmp_path):
    config = model_config(factory.write_broken(tmp_path / "added"))

    async def scenario():
        deployment = StartingDeployment()
        bridge = BridgedServable(config, deployment)
        response = await bridge.infer(request())
        metadata = await bridge.metadata(None)
        return response, metadata, [s.state for s in await bridge.statuses()], deployment.calls

    response, metadata, states, calls = asyncio.run(scenario())
    assert np.array_equal(response.outputs["a"], np.zeros((1, 10), np.float32))
    assert metadata == {"name": "from the deployment"} and states == [ModelVersionState.LOADING]
    assert calls == ["infer", "metadata"]


def test_a_cancelled_request_does_not_cancel_the_compile(tmp_path):
    config = model_config(factory.write_dummy(tmp_path / "added", [1]))

    async def scenario():
        bridge = BridgedServable(config, StartingDeployment())
        first = asyncio.create_task(bridge.infer(request()))
        await asyncio.sleep(0)
        first.cancel()  # the client went away while the model compiled
        await asyncio.gather(first, return_exceptions=True)
        return await bridge.infer(request())

    assert np.array_equal(asyncio.run(scenario()).outputs["a"], np.full((1, 10), 3.0, np.float32))


def test_the_ingress_keeps_a_bridge_across_revisions_and_hands_over_to_the_deployment(tmp_path):
    from app.config_service import Catalog
    from app.following import CatalogFollower, HandleServable

    config = model_config(factory.write_dummy(tmp_path / "added", [1]))
    changed = config.model_copy(update={"nireq": 2})

    def catalog(revision: int, bridges: dict) -> Catalog:
        starting = frozenset({"model.added"}) if bridges else frozenset()
        return Catalog(revision, {"added": "model.added"}, {"added": (1,)}, {}, (), starting, bridges)

    async def scenario():
        servable = object.__new__(CatalogFollower)._servable  # no actor to follow: only the choice of servable
        bridged = servable("added", "model.added", catalog(1, {"added": config}), None)
        kept = servable("added", "model.added", catalog(2, {"added": config}), bridged)
        rebuilt = servable("added", "model.added", catalog(3, {"added": changed}), kept)
        handed_over = servable("added", "model.added", catalog(4, {}), rebuilt)
        return bridged, kept, rebuilt, handed_over

    bridged, kept, rebuilt, handed_over = asyncio.run(scenario())
    assert isinstance(bridged, BridgedServable) and kept is bridged
    assert isinstance(rebuilt, BridgedServable) and rebuilt is not bridged and rebuilt.config == changed
    assert isinstance(handed_over, HandleServable) and handed_over is rebuilt.deployment
    assert not handed_over.starting


def test_a_long_poll_answered_after_a_reload_refresh_does_not_put_an_older_catalog_back():
    from app.config_service import Catalog
    from app.dataplane import DataPlane
    from app.following import CatalogFollower

    def catalog(revision: int, starting: frozenset) -> Catalog:
        return Catalog(revision, {"m": "model.m"}, {"m": (1,)}, {}, (), starting)

    class Actor:
        """The config actor's long-poll, answered when and with what the test says."""

        def __init__(self) -> None:
            self.answers: list[asyncio.Future] = []
            self.wait_for_change = self

        def remote(self, seen, timeout, heartbeat=True) -> asyncio.Future:
            self.answers.append(asyncio.get_running_loop().create_future())
            return self.answers[-1]

    class Ref:
        def __init__(self, actor: Actor) -> None:
            self.get = lambda: actor

    async def scenario() -> DataPlane:
        actor, dataplane = Actor(), DataPlane({})
        follower = CatalogFollower(dataplane, Ref(actor).get)
        polling = asyncio.ensure_future(follower._step())  # asked before the reload finished
        refreshing = asyncio.ensure_future(follower.refresh())  # the reload's answer asks again
        await asyncio.sleep(0)
        actor.answers[1].set_result(catalog(2, frozenset()))  # what the reload made: running
        await refreshing
        actor.answers[0].set_result(catalog(1, frozenset({"model.m"})))  # mid-reload: starting
        await polling
        return dataplane

    dataplane = asyncio.run(scenario())
    assert dataplane.ready  # the reload's catalog stands
