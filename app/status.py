"""Model version states as OVMS reports them in /v1/config (modelversionstatus.hpp)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class ModelVersionState(IntEnum):
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class ErrorCode(str, Enum):
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


def model_status_body(statuses: list[VersionStatus]) -> dict:
    return {"model_version_status": [s.to_ovms() for s in sorted(statuses, key=lambda s: s.version)]}
