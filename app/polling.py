"""Background loops and long-polls (no Ray): a step every N seconds, a long-poll kept going against an
actor, and the revision an actor's long-polls wait on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


def retrieve_outcome(task: asyncio.Future) -> None:
    """A done callback for a background task whose caller may have stopped waiting: its outcome
    counts as seen, so asyncio does not log an exception nobody retrieved."""
    if not task.cancelled():
        task.exception()


class Poller:
    """Awaits ``step`` every ``period`` seconds on the running event loop, from ``start()`` to ``stop()``.

    The period counts from the end of one step to the start of the next, so a slow step is never
    overlapped by the next one. A step that raises is logged and the polling goes on: one bad scan
    must not end the watching for good.
    """

    def __init__(self, step: Callable[[], Awaitable[object]], period: float, what: str) -> None:
        if period <= 0:
            raise ValueError(f"poll period {period} must be positive; do not start a poller to disable polling")
        self.step, self.period, self.what = step, period, what
        self._task: asyncio.Task | None = None

    def start(self) -> Poller:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"poll {self.what}")
        return self

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("polling %s failed; trying again in %s s", self.what, self.period)

    def stop(self) -> None:
        """Cancel the task; a step under way stops at its next await."""
        if self._task is not None:
            self._task.cancel()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()


class ActorFollower:
    """One long-poll at a time to a named actor, back to back, from ``start()`` to ``stop()``.

    If the actor is unreachable (restarting, or ended with a previous app), the replica keeps
    what it has, waits a second, finds the actor again (or creates it) and starts over: a new
    incarnation's revisions are unrelated to the old one's, so ``seen`` is forgotten.
    """

    retry_seconds = 1.0

    def __init__(self, find: Callable[[], Any], what: str) -> None:
        self.find, self.what = find, what
        self.actor = find()
        self.seen: int | None = None
        self.task: asyncio.Task | None = None

    async def _step(self) -> None:
        """One long-poll, and apply what it returned."""
        raise NotImplementedError

    async def start(self) -> None:
        while not await self._attempt():  # serve nothing before the first answer is applied
            pass
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._attempt()

    async def _attempt(self) -> bool:
        try:
            await self._step()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s unreachable (%s); retrying", self.what, exc)
            await asyncio.sleep(self.retry_seconds)
            self.seen = None
            try:
                self.actor = self.find()
            except Exception as missing:  # not back yet: the next attempt fails and looks again
                log.warning("%s not found (%s)", self.what, missing)
            return False

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Revision:
    """A revision number that long-polls wait on, as Ray Serve's LongPollHost keeps one per key.

    ``publish`` moves it and wakes every waiter; ``wait(seen, timeout)`` returns once it differs
    from what the caller has seen, or after the timeout. ``wait_until`` waits for any condition on
    the host's state, checked again at every ``publish`` or ``wake``.
    """

    def __init__(self, current: int = 0) -> None:
        self.current = current
        self._woken = asyncio.Event()  # replaced at every wake, so a waiter never sees a stale set()

    def publish(self, current: int | None = None) -> None:
        """Move to ``current`` (default: the next number) and wake every waiter."""
        self.current = self.current + 1 if current is None else current
        self.wake()

    def wake(self) -> None:
        """Wake every waiter to check its condition again, without a new revision."""
        self._woken.set()
        self._woken = asyncio.Event()

    async def wait(self, seen: int | None, timeout: float) -> int:
        """The revision once it differs from ``seen``, or after ``timeout`` seconds."""
        await self.wait_until(lambda: self.current != seen, timeout)
        return self.current

    async def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Until ``done()`` holds or ``timeout`` seconds have passed; whether it holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            woken = self._woken
            try:
                await asyncio.wait_for(woken.wait(), remaining)
            except TimeoutError:
                return done()
        return True
