"""Wiring the executor gRPC server: service, health, reflection, metrics, graceful drain."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from acecoder.interceptor import ErrorInterceptor
from acecoder.serving import GRPC_OPTIONS, ServerConfig, stop_on_signals
from acecoder.v1 import executor_pb2, executor_pb2_grpc

from .config import ExecutorConfig
from .metrics import ExecutorMetrics
from .service import ExecutorService
from .servicer import ExecutorServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = executor_pb2.DESCRIPTOR.services_by_name["Executor"].full_name


class ExecutorServer:
    """A running executor server. `await start()`, then `await stop()` (or `wait()`)."""

    def __init__(self, config: ExecutorConfig, server_config: ServerConfig) -> None:
        self.config = config
        self.server_config = server_config
        self.metrics = ExecutorMetrics()
        self.service = ExecutorService(config, metrics=self.metrics)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics_port: int | None = None
        self._metrics_server: Any = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        await self.service.start()
        server = grpc.aio.server(interceptors=[ErrorInterceptor(self.metrics)],
                                 options=GRPC_OPTIONS)
        executor_pb2_grpc.add_ExecutorServicer_to_server(ExecutorServicer(self.service), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        sc = self.server_config
        self.port = server.add_insecure_port(f"{sc.host}:{sc.port}")
        if self.port == 0:
            raise RuntimeError(f"could not listen on {sc.host}:{sc.port}")
        await server.start()
        self.server = server
        if sc.metrics_port is not None:
            self._metrics_server, _ = start_http_server(
                sc.metrics_port, addr=sc.host, registry=self.metrics.registry)
            self.metrics_port = self._metrics_server.server_port
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info("executor serving on %s:%d with %d workers in %s", sc.host, self.port,
                    self.config.workers, self.service.jail)

    async def stop(self) -> None:
        """Drain: health NOT_SERVING, refuse new work, finish admitted work within the grace."""
        if self.server is None or self._stopped.is_set():
            return
        logger.info("draining (grace %.1fs)", self.server_config.grace)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.service.begin_drain()
        await self.service.wait_idle(self.server_config.grace)
        await self.server.stop(grace=1.0)
        await self.service.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self._stopped.set()
        logger.info("executor stopped")

    async def wait(self) -> None:
        await self._stopped.wait()


async def serve(config: ExecutorConfig, server_config: ServerConfig,
                ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT, then drain and return."""
    server = ExecutorServer(config, server_config)
    await server.start()
    stop_on_signals(server.stop)
    metrics = f", metrics on :{server.metrics_port}" if server.metrics_port is not None else ""
    print(f"acecoder executor listening on {server_config.host}:{server.port} "
          f"(jail: {server.service.jail}, workers: {config.workers}{metrics})", flush=True)
    if ready is not None:
        ready.set()
    await server.wait()
