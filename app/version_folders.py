"""Which version folders of a disk-backed model to load or retire on each scan, as OVMS's watcher decides.

Plain Python over the file system: ``ModelServable.refresh`` carries the changes out (compile,
drain, free). The policy selects out of the numeric folders on disk; a selected version is loaded
when it has no status yet or has ended, and a version with a status that the policy no longer
selects is retired.

A folder that fails to load (broken, or caught half-copied: an ``.xml`` whose ``.bin`` is not there
yet) stays LOADING/UNKNOWN and is tried again at the first scan that finds its files changed
(names, sizes or modification times), so a copy that completes is picked up at the next poll while
an unchanged broken folder is not re-read and re-logged every second. OVMS retries every poll.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.config import VersionPolicy
from app.openvino_model import versions_on_disk
from app.status import ErrorCode, ModelVersionState, VersionStatus

log = logging.getLogger(__name__)

# (relative path, size, mtime in ns) of every file under a version folder, sorted.
Stamp = tuple[tuple[str, int, int], ...]


def folder_stamp(folder: Path) -> Stamp:
    """What a version folder holds now; any file added, removed or rewritten changes it."""
    entries = []
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                stat = path.stat()
                entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
        except FileNotFoundError:  # removed while we looked: the next scan sees the new contents
            continue
    return tuple(sorted(entries))


@dataclass(frozen=True)
class FolderChanges:
    """What one scan asks for."""

    load: dict[int, Stamp] = field(default_factory=dict)  # version -> its folder's stamp before loading
    retire: list[int] = field(default_factory=list)  # versions the policy no longer selects

    def __bool__(self) -> bool:
        return bool(self.load or self.retire)


class VersionFolders:
    """The version folders under one model's ``base_path``, and the failed loads not to repeat."""

    def __init__(self, base_path: Path, policy: VersionPolicy) -> None:
        self.base_path = base_path
        self.policy = policy
        self._failed: dict[int, Stamp] = {}  # version -> its folder's stamp when loading it failed

    def scan(self, statuses: Mapping[int, VersionStatus]) -> FolderChanges:
        """The loads and retirements that bring ``statuses`` in line with the folders on disk."""
        on_disk = versions_on_disk(self.base_path)
        selected = self.policy.select(on_disk)
        load = {}
        for version in selected:
            stamp = self._stamp_if_due(version, statuses.get(version))
            if stamp is not None:
                load[version] = stamp
        retire = [v for v, s in sorted(statuses.items()) if v not in selected and s.state is not ModelVersionState.END]
        for version in retire:
            self._failed.pop(version, None)  # a folder put back later is tried afresh
        return FolderChanges(load, retire)

    def _stamp_if_due(self, version: int, status: VersionStatus | None) -> Stamp | None:
        if status is not None and status.state is not ModelVersionState.END and not _failed(status):
            return None  # loaded, or being loaded or retired by the caller
        stamp = folder_stamp(self.base_path / str(version))
        if status is not None and _failed(status) and self._failed.get(version) == stamp:
            return None  # failed, and nothing changed since: loading again would fail the same way
        return stamp

    def failed(self, version: int, stamp: Stamp) -> None:
        """Loading ``version`` from files matching ``stamp`` failed: wait for them to change."""
        self._failed[version] = stamp

    def loaded(self, version: int) -> None:
        self._failed.pop(version, None)


def _failed(status: VersionStatus) -> bool:
    return status.state is ModelVersionState.LOADING and status.error_code is ErrorCode.UNKNOWN
