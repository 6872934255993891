"""The front application: the routes of the whole server, and every name no other application has.

Serve's HAProxy front door sends ``/v2/models/<name>/...`` straight to the application of that
model or pipeline (app/deployments.py) once it has a running replica, and the rest of
``/v2/models`` to the shared pipeline runner when the config has one (app/runner.py, which
answers those names as the front would); everything else comes here: the server routes
(``/v2``, health, ``/v1/config``, reload, ``/metrics``), a model that a reload just added
(served in this process until its deployment runs, app/bridge.py), names a reload removed
(404, END), names nothing serves (OVMS's 404), and names a URL would escape (served over a
handle). gRPC carries the model's name in the message, not the path, so the
front's replicas run the server's gRPC service and call the servable over a handle.

Its replicas follow the config actor's catalog (app/following.py).
"""

from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI
from ray import serve

from app.config import MonitoringConfig
from app.config_actor import ConfigActorRef
from app.dataplane import DataPlane
from app.deployments import replica_reporter, settle_on_node
from app.errors import ConfigReloadFailed
from app.following import CatalogFollower
from app.kserve_grpc import KServeGrpcMethods, add_inference_service
from app.metrics import ServingMetrics, exposition
from app.rest import build_rest_app

log = logging.getLogger(__name__)


async def start_grpc_server(servicer: KServeGrpcMethods, port: int, max_request_bytes: int) -> grpc.aio.Server:
    """KServe v2 gRPC on ``port`` of every interface. Replicas on one node share the port
    (SO_REUSEPORT), and the kernel spreads the connections over them."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1),
        ]
    )
    add_inference_service(servicer, server)
    server.add_insecure_port(f"[::]:{port}")  # raises if the port is taken by another program
    await server.start()
    return server


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress()
class Ingress(KServeGrpcMethods):
    """KServe v2 front end, REST and gRPC: decodes the wire, routes to servables by name, encodes the reply."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async __init__
        self,
        config_actor: ConfigActorRef,
        max_request_bytes: int,
        monitoring: MonitoringConfig | None = None,
        grpc_port: int = 0,
    ) -> None:
        settle_on_node()
        self.dataplane = DataPlane({})
        self.follower = CatalogFollower(self.dataplane, config_actor.get)
        await self.follower.start()
        self.max_request_bytes = max_request_bytes
        metrics = monitoring.metrics if monitoring is not None else None
        self.metrics = ServingMetrics(metrics.metrics_list) if metrics is not None and metrics.enable else None
        board = (config_actor.name, config_actor.namespace)  # the config actor sums the counts
        self.reporter = replica_reporter(self.metrics, board) if self.metrics is not None else None
        # 0: no gRPC (tests of REST alone, or a second app on the same cluster)
        self.grpc_server = await start_grpc_server(self, grpc_port, max_request_bytes) if grpc_port else None

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_rest_app(
            self.dataplane, self.max_request_bytes, reload=self.reload, metrics=self.metrics, scrape=self.scrape
        )

    async def __del__(self) -> None:
        if getattr(self, "follower", None) is not None:
            self.follower.stop()
        grpc_server = getattr(self, "grpc_server", None)
        if grpc_server is not None:
            await grpc_server.stop(grace=5)

    async def reload(self) -> bool:
        """``POST /v1/config/reload``: load config.json now (and poll the loaders); True if anything changed."""
        changed, error = await self.follower.actor.reload.remote()  # the actor the catalog comes from
        if error is not None:
            raise ConfigReloadFailed(error)
        await self.follower.refresh()  # answer with the catalog the reload made
        return changed

    async def scrape(self) -> bytes:
        """``GET /metrics``: the counts of every replica that serves requests, summed by the config actor."""
        assert self.metrics is not None and self.reporter is not None
        await self.reporter.flush()
        return exposition(await self.follower.actor.metrics.remote(), self.metrics.enabled)
