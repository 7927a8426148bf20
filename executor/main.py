"""Wiring the executor gRPC server: service, health, reflection, metrics, the optional HTTP front
(SandboxFusion's /run_code), graceful drain of both."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

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
    costs = {"ExecuteBatch": lambda r: len(r.requests),
             "ExecuteBatchChunked": lambda r: len(r.requests)}

    def __init__(self, config: ExecutorConfig, server_config: ServerConfig) -> None:
        self.config = config
        metrics = ExecutorMetrics()
        self.service: ExecutorService = ExecutorService(config, metrics=metrics)
        super().__init__(server_config, metrics=metrics, registry=metrics.registry,
                         service=self.service)
        self.http: Any = None
        """The HTTP front (executor.http.ExecutorHttp) when `http_port` is set."""
        self.http_port: int | None = None

    def add_servicers(self, server: grpc.aio.Server) -> None:
        executor_pb2_grpc.add_ExecutorServicer_to_server(ExecutorServicer(self.service), server)

    async def start(self) -> None:
        sc = self.server_config
        await self.service.start()
        await super().start()
        if sc.http_port is not None:  # fastapi is imported only then
            from .http import ExecutorHttp

            self.http = ExecutorHttp(self.service, guard=self.guard, security=sc.security,
                                     max_body_bytes=int(sc.http_max_body_mb * 1024 * 1024),
                                     header_timeout=sc.http_header_timeout)
            self.http_port = await self.http.start(sc.host, sc.http_port)
        await self.set_serving(True)
        logger.info("executor serving on %s:%d with %d workers in %s", self.server_config.host,
                    self.port, self.config.workers, self.service.jail)

    async def before_close(self) -> None:
        # after the drain: in-flight HTTP calls have had the grace, new ones got 503
        if self.http is not None:
            await self.http.stop()


async def serve(config: ExecutorConfig, server_config: ServerConfig,
                ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT, then drain and return."""
    server = ExecutorServer(config, server_config)
    await server.start()
    stop_on_signals(server.stop)
    http = f", http on :{server.http_port}" if server.http_port is not None else ""
    metrics = f", metrics on :{server.metrics_port}" if server.metrics_port is not None else ""
    print(f"acecoder executor listening on {server_config.host}:{server.port} "
          f"(jail: {server.service.jail}, workers: {config.workers}{http}{metrics}"
          f"{server.security_summary()})", flush=True)
    if ready is not None:
        ready.set()
    await server.wait()
