"""Which version folders of a model's ``base_path`` to load or retire on each scan, as OVMS's watcher decides.

Plain Python over a model store (app/storage.py: a local folder or an object store):
``ModelServable.refresh`` carries the changes out (fetch, compile, drain, free). The policy
selects out of the numeric folders present; a selected version is loaded
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

from app.config import VersionPolicy
from app.status import ErrorCode, ModelVersionState, VersionStatus
from app.storage import ModelStore, Stamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FolderChanges:
    """What one scan asks for."""

    load: dict[int, Stamp] = field(default_factory=dict)  # version -> its folder's stamp before loading
    retire: list[int] = field(default_factory=list)  # versions the policy no longer selects

    def __bool__(self) -> bool:
        return bool(self.load or self.retire)


class VersionFolders:
    """The version folders under one model's ``base_path``, and the failed loads not to repeat."""

    def __init__(self, store: ModelStore, policy: VersionPolicy) -> None:
        self.store = store
        self.policy = policy
        self._failed: dict[int, Stamp] = {}  # version -> its folder's stamp when loading it failed

    def scan(self, statuses: Mapping[int, VersionStatus]) -> FolderChanges:
        """The loads and retirements that bring ``statuses`` in line with the version folders;
        raises StorageError if the store cannot be read (nothing changes then)."""
        present = self.store.versions()
        self.store.forget(keep=present)
        selected = self.policy.select(present)
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
        stamp = self.store.stamp(version)
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
