"""A background task that runs one async step every N seconds until it is stopped (no Ray)."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

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
