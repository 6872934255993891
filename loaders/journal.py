"""The crash journal: which loader hook was running when the loader actor's process died.

A C++ loader runs in the loader actor's process, so a segfault in it ends that process; Ray then
restarts the actor, which loads every model again. Without knowing which call crashed, the
restarted actor would make the same call and crash again, forever. So every hook call is written
to a small file before it runs and erased after it returns: a record found at start is the call
that ended the previous process. The manager then skips that call for a while and says why.

Two small writes per hook call; the file lives as long as the actor's name on this node.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class HookCall:
    """One hook call: which loader, which hook (its Python name), of which model and version."""

    loader_name: str
    hook: str
    started: float  # seconds since the epoch
    model: str | None = None
    version: int | None = None

    def describe(self) -> str:
        what = "" if self.model is None else f" for model '{self.model}'"
        what += "" if self.version is None else f" version {self.version}"
        return f"loader '{self.loader_name}' {self.hook}{what}"


class CrashJournal:
    """The hook call in progress, kept in ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def take(self) -> HookCall | None:
        """The call that was running when the last process that used this file died; then forget it."""
        size = os.fstat(self._fd).st_size
        raw = os.pread(self._fd, size, 0) if size else b""
        self.clear()
        try:
            return HookCall(**json.loads(raw)) if raw else None
        except (ValueError, TypeError):  # a record cut short by the crash itself
            return None

    def clear(self) -> None:
        os.ftruncate(self._fd, 0)

    @contextmanager
    def running(self, call: HookCall) -> Iterator[None]:
        record = json.dumps(asdict(call)).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, record, 0)
        try:
            yield
        finally:
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        os.close(self._fd)
