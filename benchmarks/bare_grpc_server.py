"""The gRPC baseline server: rayvino's own KServe v2 gRPC service (app/kserve_grpc.py) over the
same servables as benchmarks/bare_server.py, in one process with no Ray.

    BARE_SERVER_CONFIG=config.json python benchmarks/bare_grpc_server.py 8767
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from bare_server import dataplane  # benchmarks/bare_server.py, beside this script

from app.dataplane import DataPlane
from app.kserve_grpc import KServeGrpcMethods, add_inference_service


class BareGrpc(KServeGrpcMethods):
    def __init__(self, plane: DataPlane) -> None:
        self.dataplane, self.metrics = plane, None


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
    add_inference_service(BareGrpc(dataplane()), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
