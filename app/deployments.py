"""Thin Ray Serve deployments: each forwards to a plain-Python core and holds no rules of its own."""
from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from app.config import ModelConfig
from app.dataplane import DataPlane
from app.inference import InferRequest, InferResponse
from app.model import ModelServable
from app.rest import build_rest_app
from app.status import VersionStatus


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class ModelDeployment:
    """One model: every replica compiles each served version once."""

    def __init__(self, config: ModelConfig) -> None:
        self.model = ModelServable(config)
        self.model.load()

    async def statuses(self) -> list[VersionStatus]:
        return self.model.statuses()

    async def metadata(self, version: int | None) -> dict:
        return self.model.metadata(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.model.infer(request)


class HandleServable:
    """A servable behind a deployment handle: the DataPlane calls it like an in-process one."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def statuses(self) -> list[VersionStatus]:
        return await self.handle.statuses.remote()

    async def metadata(self, version: int | None) -> dict:
        return await self.handle.metadata.remote(version)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.handle.infer.remote(request)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    """KServe v2 REST front end: decodes the wire, routes to servables by name, encodes the reply."""

    def __init__(self, servables: dict[str, DeploymentHandle], max_request_bytes: int) -> None:
        self.dataplane = DataPlane({name: HandleServable(handle) for name, handle in servables.items()})
        self.max_request_bytes = max_request_bytes

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_rest_app(self.dataplane, self.max_request_bytes)
