"""Background loops (no Ray): a step every N seconds, and a long-poll kept going against an actor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


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
            self.actor, self.seen = self.find(), None
            return False

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
