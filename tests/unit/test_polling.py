"""Poller, ActorFollower and Revision: the background loops replicas watch folders and follow actors with,
and the revision the actors' long-polls wait on (no Ray)."""

from __future__ import annotations

import asyncio

import pytest

from app.polling import ActorFollower, Poller, Revision

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

        async def found_again() -> None:
            while len(follower.applied) < 2:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(found_again(), timeout=30)  # however slow the machine
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


# --- Revision: what the actors' long-polls wait on ----------------------------------------------


def test_a_wait_returns_at_once_when_the_caller_is_behind():
    async def scenario():
        revision = Revision(4)
        return await revision.wait(None, timeout=30), await revision.wait(3, timeout=30)

    assert asyncio.run(scenario()) == (4, 4)


def test_a_wait_returns_when_the_revision_is_published():
    async def scenario():
        revision = Revision()
        waiters = [asyncio.create_task(revision.wait(0, timeout=30)) for _ in range(3)]
        await asyncio.sleep(0)  # every waiter is now waiting
        assert not any(w.done() for w in waiters)
        revision.publish()
        return await asyncio.wait_for(asyncio.gather(*waiters), 5)

    assert asyncio.run(scenario()) == [1, 1, 1]


def test_publish_can_jump_to_a_given_revision():
    async def scenario():
        revision = Revision(10)
        waiting = asyncio.create_task(revision.wait(10, timeout=30))
        await asyncio.sleep(0)
        revision.publish(25)
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(scenario()) == 25


def test_a_wait_with_nothing_new_ends_at_its_timeout():
    async def scenario():
        revision = Revision(2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen = await revision.wait(2, timeout=0.05)
        return seen, loop.time() - started

    seen, waited = asyncio.run(scenario())
    assert seen == 2 and waited >= 0.04  # asyncio may fire a timer up to its clock resolution early


def test_wait_until_checks_its_condition_again_at_every_wake():
    async def scenario():
        revision, state = Revision(), {"acknowledged": 0}
        waiting = asyncio.create_task(revision.wait_until(lambda: state["acknowledged"] == 2, timeout=30))
        for acknowledged in (1, 2):
            await asyncio.sleep(0)
            assert not waiting.done()
            state["acknowledged"] = acknowledged
            revision.wake()
        held = await asyncio.wait_for(waiting, 5)
        return held, revision.current

    assert asyncio.run(scenario()) == (True, 0)  # a wake publishes no new revision


def test_wait_until_says_when_its_condition_never_held():
    async def scenario():
        return await Revision().wait_until(lambda: False, timeout=0.01)

    assert asyncio.run(scenario()) is False
