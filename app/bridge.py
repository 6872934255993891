"""A model a reload just added, served in the ingress's own process until its deployment runs.

A new deployment needs a new replica process: Ray starts a worker, which imports Ray Serve and
OpenVINO before the model's constructor runs. That takes 2 to 6 s on a busy two-core machine,
while compiling a small model takes well under one. So the ingress compiles the new model
itself, serves it until the config actor reports its deployment RUNNING, then drops it and
routes to the deployment. If this process cannot serve the model (its files are on another
node, say), requests wait for the deployment, as they would with no bridge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from app.config import ModelConfig
from app.dataplane import Servable
from app.inference import InferRequest, InferResponse
from app.model import ModelServable
from app.status import VersionStatus

log = logging.getLogger(__name__)


class BridgedServable:
    """Serves ``config`` in this process once compiled; until then, and if that fails, ``deployment``."""

    def __init__(self, config: ModelConfig, deployment: Servable) -> None:
        self.config, self.deployment = config, deployment
        self.model: ModelServable | None = None
        self._loading = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        try:
            model = await asyncio.to_thread(ModelServable.compiled, self.config)  # the event loop keeps serving
        except Exception:
            log.exception("model %s: cannot serve it from the ingress; waiting for its deployment", self.config.name)
            return
        if not model.available_versions():
            log.warning("model %s: no version compiled in the ingress; waiting for its deployment", self.config.name)
            return
        self.model = model
        log.info("model %s: served from the ingress until its deployment runs", self.config.name)

    async def _model_here(self) -> ModelServable | None:
        """The model compiled in this process, once its compile is over; None if it could not be."""
        await asyncio.shield(self._loading)  # a cancelled request must not cancel the compile
        return self.model

    def known_versions(self) -> Collection[int]:
        if self.model is not None:
            return self.model.known_versions()
        return self.deployment.known_versions()

    async def statuses(self) -> list[VersionStatus]:
        if self.model is not None:
            return self.model.statuses()
        return await self.deployment.statuses()  # LOADING, as for any deployment that is starting

    async def metadata(self, version: int | None) -> dict:
        if (model := await self._model_here()) is not None:
            return model.metadata(version)
        return await self.deployment.metadata(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        if (model := await self._model_here()) is not None:
            return await model.infer(request)
        return await self.deployment.infer(request)
