"""The models a pipeline replica runs itself, as OVMS runs a pipeline's models in its own process.

A call from a pipeline to a model in another replica is a Serve handle hop: a few milliseconds
of Ray's own work on both sides, and every tensor copied there and back. A pipeline's replica
can instead compile the model and run it in place; the model's deployment still answers the
model's own requests. Each model is compiled once per replica, shared by every pipeline there
that uses it, follows its version folders like a model replica, and goes with its last user.
No Ray.
"""

from __future__ import annotations

import asyncio
import json
import logging

from app.config import ModelConfig
from app.model import ModelServable
from app.polling import Poller

log = logging.getLogger(__name__)


class LocalModels:
    def __init__(self) -> None:
        self._loading: dict[str, asyncio.Task[ModelServable]] = {}  # key -> the compile, shared
        self._pollers: dict[str, Poller] = {}
        self._users: dict[str, int] = {}

    async def take(self, config: ModelConfig, poll_seconds: float) -> ModelServable:
        """The model as ``config`` describes it, compiled here (in a worker thread: the event loop
        keeps serving) unless a pipeline of this replica already took it; pair with ``give_back``."""
        key = _key(config)
        self._users[key] = self._users.get(key, 0) + 1
        if key not in self._loading:
            self._loading[key] = asyncio.ensure_future(self._load(config, poll_seconds, key))
        return await asyncio.shield(self._loading[key])

    async def _load(self, config: ModelConfig, poll_seconds: float, key: str) -> ModelServable:
        model = await asyncio.to_thread(ModelServable.compiled, config)
        if poll_seconds > 0 and key in self._users:  # 0 disables watching the version folders, as in OVMS
            self._pollers[key] = Poller(model.refresh, poll_seconds, f"{config.name} folders (inline)").start()
        log.info("model %s: compiled in this pipeline replica", config.name)
        return model

    def give_back(self, config: ModelConfig) -> None:
        """One user fewer; the last one's leaving drops the model (requests in flight keep it alive)."""
        key = _key(config)
        self._users[key] -= 1
        if self._users[key] > 0:
            return
        del self._users[key]
        self._loading.pop(key).cancel()  # a compile under way ends with its thread; a done one is kept by its users
        poller = self._pollers.pop(key, None)
        if poller is not None:
            poller.stop()

    def __len__(self) -> int:
        return len(self._users)


def _key(config: ModelConfig) -> str:
    """Two pipelines share a model only if its whole config is the same."""
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)
