"""Poller and ActorFollower: the background loops replicas watch folders and follow actors with (no Ray)."""

from __future__ import annotations

import asyncio

import pytest

from app.polling import ActorFollower, Poller

PERIOD = 0.001


class Steps:
    """A step that counts its calls, raises on the ones listed, and signals when ``wanted`` calls were made."""

    def __init__(self, wanted: int, failing: tuple[int, ...] = ()) -> None:
        self.calls, self.wanted, self.failing = 0, wanted, failing
        self.enough = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls >= self.wanted:
            self.enough.set()
        if self.calls in self.failing:
            raise OSError("the folder could not be listed")


async def stopped(poller: Poller) -> bool:
    for _ in range(100):  # cancellation takes effect when the task next runs
        if not poller.running:
            return True
        await asyncio.sleep(0)
    return False


def test_steps_repeat_until_stopped():
    async def scenario():
        steps = Steps(wanted=3)
        poller = Poller(steps, PERIOD, "test").start()
        await asyncio.wait_for(steps.enough.wait(), timeout=30)
        assert poller.running
        poller.stop()
        assert await stopped(poller)

    asyncio.run(scenario())


def test_a_failing_step_does_not_end_the_polling(caplog):
    async def scenario():
        steps = Steps(wanted=3, failing=(1, 2))
        poller = Poller(steps, PERIOD, "test").start()
        await asyncio.wait_for(steps.enough.wait(), timeout=30)
        poller.stop()
        assert await stopped(poller)

    asyncio.run(scenario())
    assert "polling test failed" in caplog.text and "could not be listed" in caplog.text


def test_stop_interrupts_a_step_under_way():
    async def scenario():
        started, never = asyncio.Event(), asyncio.Event()

        async def step():
            started.set()
            await never.wait()

        poller = Poller(step, PERIOD, "test").start()
        await asyncio.wait_for(started.wait(), timeout=30)
        poller.stop()
        assert await stopped(poller)

    asyncio.run(scenario())


def test_zero_period_is_refused_not_spun():
    with pytest.raises(ValueError, match="must be positive"):
        Poller(Steps(1), 0, "test")


class Follower(ActorFollower):
    """Follows a revision counter; the actors it finds are numbered in the order they were found."""

    retry_seconds = 0.0

    def __init__(self, actors: list) -> None:
        self.found = iter(actors)
        super().__init__(lambda: next(self.found), "the test actor")
        self.applied: list[tuple[str, int]] = []

    async def _step(self) -> None:
        revision = await self.actor(self.seen)
        if revision != self.seen:
            self.applied.append((self.actor.__name__, revision))
            self.seen = revision


def test_a_follower_finds_the_actor_again_and_forgets_what_it_had_seen():
    async def first(seen):
        if seen is not None:
            raise ConnectionError("the actor's process died")
        return 7

    async def restarted(seen):
        await asyncio.sleep(0.01)  # a long-poll
        return 1 if seen is None else seen

    async def scenario():
        follower = Follower([first, restarted])
        await follower.start()
        await asyncio.sleep(0.1)
        follower.stop()
        return follower.applied

    assert asyncio.run(scenario()) == [("first", 7), ("restarted", 1)]


def test_a_follower_serves_nothing_before_its_first_answer():
    async def unreachable(seen):
        raise ConnectionError("not up yet")

    async def up(seen):
        return 3

    async def scenario():
        follower = Follower([unreachable, unreachable, up])
        await follower.start()
        follower.stop()
        return follower.applied

    assert asyncio.run(scenario()) == [("up", 3)]
