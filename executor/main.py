"""Wiring the executor gRPC server: service, health, reflection, metrics, graceful drain."""

from __future__ import annotations

import asyncio
import logging

import grpc

from acecoder.grpc_server import GrpcServer
from acecoder.serving import ServerConfig, stop_on_signals
from acecoder.v1 import executor_pb2, executor_pb2_grpc

from .config import ExecutorConfig
from .metrics import ExecutorMetrics
from .service import ExecutorService
from .servicer import ExecutorServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = executor_pb2.DESCRIPTOR.services_by_name["Executor"].full_name


class ExecutorServer(GrpcServer):
    """A running executor server. `await start()`, then `await stop()` (or `wait()`)."""

    service_name = SERVICE_NAME
    what = "executor"
    costs = {"ExecuteBatch": lambda r: len(r.requests)}

    def __init__(self, config: ExecutorConfig, server_config: ServerConfig) -> None:
        self.config = config
        metrics = ExecutorMetrics()
        self.service: ExecutorService = ExecutorService(config, metrics=metrics)
        super().__init__(server_config, metrics=metrics, registry=metrics.registry,
                         service=self.service)

    def add_servicers(self, server: grpc.aio.Server) -> None:
        executor_pb2_grpc.add_ExecutorServicer_to_server(ExecutorServicer(self.service), server)

    async def start(self) -> None:
        await self.service.start()
        await super().start()
        await self.set_serving(True)
        logger.info("executor serving on %s:%d with %d workers in %s", self.server_config.host,
                    self.port, self.config.workers, self.service.jail)


async def serve(config: ExecutorConfig, server_config: ServerConfig,
                ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT, then drain and return."""
    server = ExecutorServer(config, server_config)
    await server.start()
    stop_on_signals(server.stop)
    metrics = f", metrics on :{server.metrics_port}" if server.metrics_port is not None else ""
    print(f"acecoder executor listening on {server_config.host}:{server.port} "
          f"(jail: {server.service.jail}, workers: {config.workers}{metrics}"
          f"{server.security_summary()})", flush=True)
    if ready is not None:
        ready.set()
    await server.wait()
