"""The front application's view of a deployment's statuses (app/following.py HandleServable): /v1/config
and /ready answer from what is known while a replica is being replaced, instead of waiting for it."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError

from app import following as front
from app.dataplane import DataPlane
from app.following import HandleServable
from app.status import ModelVersionState, VersionStatus

AVAILABLE = [VersionStatus(1, ModelVersionState.AVAILABLE), VersionStatus(2, ModelVersionState.AVAILABLE)]


class Replicas:
    """Stands in for the deployment handle's ``statuses`` method: each question gets the next
    behaviour: a list to answer, an exception to raise, or None to never answer (a replica that
    died and is being replaced)."""

    def __init__(self, *behaviours: list[VersionStatus] | BaseException | None) -> None:
        self.behaviours = list(behaviours)
        self.asked = 0

    def remote(self):
        behaviour = self.behaviours[min(self.asked, len(self.behaviours) - 1)]
        self.asked += 1
        return self._answer(behaviour)

    @staticmethod
    async def _answer(behaviour):
        if behaviour is None:
            await asyncio.Event().wait()
        if isinstance(behaviour, BaseException):
            raise behaviour
        return behaviour


class Handle:
    def __init__(self, replicas: Replicas) -> None:
        self.statuses = replicas


@pytest.fixture(autouse=True)
def short_wait(monkeypatch):
    monkeypatch.setattr(front, "STATUS_WAIT_SECONDS", 0.05)


def servable(replicas: Replicas) -> HandleServable:
    servable = HandleServable("model.m", (1, 2))
    servable.handle = Handle(replicas)  # type: ignore[assignment]  # the cached property, set
    return servable


def states(statuses: list[VersionStatus]) -> list[tuple[int, str]]:
    return [(s.version, s.state.name) for s in statuses]


def test_the_replicas_answer_is_the_answer():
    assert states(asyncio.run(servable(Replicas(AVAILABLE)).statuses())) == [(1, "AVAILABLE"), (2, "AVAILABLE")]


def test_a_replica_that_does_not_answer_gets_the_last_known_statuses():
    replicas = Replicas(AVAILABLE, None)
    model = servable(replicas)

    async def scenario():
        await model.statuses()
        return await model.statuses()

    assert states(asyncio.run(scenario())) == [(1, "AVAILABLE"), (2, "AVAILABLE")]
    assert replicas.asked == 2


def test_before_any_answer_every_version_is_loading():
    assert states(asyncio.run(servable(Replicas(None)).statuses())) == [(1, "LOADING"), (2, "LOADING")]


def test_a_replica_that_died_while_answering_gets_the_last_known_statuses():
    model = servable(Replicas(AVAILABLE, ActorDiedError()))

    async def scenario():
        await model.statuses()
        return await model.statuses()

    assert states(asyncio.run(scenario())) == [(1, "AVAILABLE"), (2, "AVAILABLE")]


def test_callers_share_one_question_while_it_is_unanswered():
    replicas = Replicas(None)
    model = servable(replicas)

    async def scenario():
        await asyncio.gather(*(model.statuses() for _ in range(5)))
        await model.statuses()  # still unanswered: no new question

    asyncio.run(scenario())
    assert replicas.asked == 1


def test_config_status_answers_for_every_servable_when_one_does_not():
    waiting, answering = servable(Replicas(None)), servable(Replicas(AVAILABLE))
    body = asyncio.run(DataPlane({"waiting": waiting, "answering": answering}).config_status())
    assert [v["state"] for v in body["waiting"]["model_version_status"]] == ["LOADING", "LOADING"]
    assert [v["state"] for v in body["answering"]["model_version_status"]] == ["AVAILABLE", "AVAILABLE"]
