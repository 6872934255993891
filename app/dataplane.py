"""The protocol-free core every front end calls: find a servable, check readiness, infer, report status.

A servable is anything with the ``Servable`` methods: a model served in this process (unit
tests, benchmarks) or a Ray Serve deployment handle (app/deployments.py). The front ends never
know which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from importlib.metadata import version
from typing import Protocol

from app.errors import ModelNotFound, ModelVersionNotLoadedAnymore, PipelineRetired
from app.inference import InferRequest, InferResponse
from app.model import ModelServable
from app.status import ModelVersionState, VersionStatus, model_status_body, require_available
from app.tensors import decimal

SERVER_NAME = "rayvino"
SERVER_VERSION = version("rayvino")  # pyproject.toml is the one place the version is written


class Servable(Protocol):
    async def statuses(self) -> list[VersionStatus]: ...

    def known_versions(self) -> Collection[int]:
        """The versions it has a status for, without waiting (metric labels take only these)."""
        ...

    async def metadata(self, version: int | None) -> dict: ...

    async def infer(self, request: InferRequest) -> InferResponse: ...


class LocalServable:
    """A model served in this process."""

    def __init__(self, model: ModelServable) -> None:
        self.model = model

    async def statuses(self) -> list[VersionStatus]:
        return self.model.statuses()

    def known_versions(self) -> Collection[int]:
        return self.model.known_versions()

    async def metadata(self, version: int | None) -> dict:
        return self.model.metadata(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.model.infer(request)


class RetiredServable:
    """A model or pipeline a config reload removed: every version END, every request 404."""

    def __init__(self, name: str, versions: tuple[int, ...], pipeline: bool = False) -> None:
        self.name, self.versions, self.pipeline = name, versions, pipeline

    def known_versions(self) -> Collection[int]:
        return self.versions

    async def statuses(self) -> list[VersionStatus]:
        return [VersionStatus(v, ModelVersionState.END) for v in self.versions]

    async def metadata(self, version: int | None) -> dict:
        raise self._retired()

    async def infer(self, request: InferRequest) -> InferResponse:
        raise self._retired()

    def _retired(self) -> ModelVersionNotLoadedAnymore | PipelineRetired:
        kind = PipelineRetired if self.pipeline else ModelVersionNotLoadedAnymore
        return kind(f"'{self.name}' was removed from the config")


class DataPlane:
    def __init__(self, servables: dict[str, Servable], ready: bool = True) -> None:
        self.servables = servables
        self.ready = ready  # /v2/health/ready: every deployment of the config has started

    def update(self, servables: dict[str, Servable], ready: bool) -> None:
        """Swap in a new catalog at once: a request sees the old one or the new one, never a mix."""
        self.servables, self.ready = servables, ready

    def version_label(self, name: str, version: str | None) -> str:
        """The metrics label of a request's version: ``default``, a version the servable has, or
        ``unknown``, so a client cannot grow the label set with made-up versions."""
        if version is None:
            return "default"
        servable = self.servables.get(name)
        number = decimal(version)
        known = servable is not None and number is not None and number in servable.known_versions()
        return version if known else "unknown"

    def servable(self, name: str) -> Servable:
        try:
            return self.servables[name]
        except KeyError:
            raise ModelNotFound(f"'{name}'; this server has {sorted(self.servables)}") from None

    async def model_ready(self, name: str, version: int | None) -> None:
        """Return if the version (default: any) is AVAILABLE, else raise the 404 that says why."""
        require_available(name, await self.servable(name).statuses(), version)

    async def metadata(self, name: str, version: int | None) -> dict:
        return await self.servable(name).metadata(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.servable(request.model_name).infer(request)

    async def config_status(self) -> dict:
        """``GET /v1/config``: every servable's version statuses, in OVMS form."""
        names = sorted(self.servables)
        statuses = await asyncio.gather(*(self.servables[name].statuses() for name in names))
        return {name: model_status_body(status) for name, status in zip(names, statuses, strict=True)}

    @staticmethod
    def server_metadata() -> dict:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}
