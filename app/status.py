"""Model version states as OVMS reports them in /v1/config (modelversionstatus.hpp)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from app.errors import ModelVersionNotFound, ModelVersionNotLoadedAnymore, ModelVersionNotLoadedYet


class ModelVersionState(IntEnum):
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class ErrorCode(StrEnum):
    OK = "OK"
    UNKNOWN = "UNKNOWN"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class VersionStatus:
    """One line of a model's ``model_version_status`` list."""

    version: int
    state: ModelVersionState
    error_code: ErrorCode = ErrorCode.OK
    error_message: str = "OK"

    @property
    def available(self) -> bool:
        return self.state is ModelVersionState.AVAILABLE

    def to_ovms(self) -> dict:
        return {
            "version": str(self.version),
            "state": self.state.name,
            "status": {"error_code": self.error_code.value, "error_message": self.error_message},
        }

    @classmethod
    def loading_failed(cls, version: int, reason: str) -> VersionStatus:
        """A version that could not be loaded: OVMS shows LOADING/UNKNOWN and retries."""
        return cls(version, ModelVersionState.LOADING, ErrorCode.UNKNOWN, reason)


def require_available(
    model: str, statuses: Iterable[VersionStatus], version: int | None, retiring: Collection[int] = ()
) -> int:
    """The version a request for ``version`` gets (None: the highest AVAILABLE), or the 404 that says why not.

    ``retiring``: versions still AVAILABLE in status but no longer served (a loader-backed model
    whose replicas are draining them).
    """
    by_version = {status.version: status for status in statuses}
    if version is None:
        available = [v for v, s in sorted(by_version.items()) if s.available and v not in retiring]
        if not available:
            raise ModelVersionNotLoadedYet(f"model '{model}' has no available version")
        return available[-1]
    status = by_version.get(version)
    if status is None:
        raise ModelVersionNotFound(f"model '{model}' serves versions {sorted(by_version) or 'none'}, not {version}")
    if status.state in (ModelVersionState.UNLOADING, ModelVersionState.END) or version in retiring:
        raise ModelVersionNotLoadedAnymore(f"model '{model}' version {version}")
    if not status.available:
        raise ModelVersionNotLoadedYet(f"model '{model}' version {version}: {status.error_message}")
    return version


def model_status_body(statuses: list[VersionStatus]) -> dict:
    return {"model_version_status": [s.to_ovms() for s in sorted(statuses, key=lambda s: s.version)]}
