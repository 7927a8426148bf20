"""Wiring the executor gRPC server: service, health, reflection, metrics, graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from acecoder.v1 import executor_pb2, executor_pb2_grpc

from .config import ExecutorConfig
from .metrics import ExecutorMetrics
from .service import ExecutorService
from .servicer import ErrorInterceptor, ExecutorServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = executor_pb2.DESCRIPTOR.services_by_name["Executor"].full_name
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    """Address to listen on ('0.0.0.0' in a pod)."""
    port: int = 50051
    """gRPC port; 0 picks a free one."""
    metrics_port: int | None = None
    """Port of the Prometheus /metrics endpoint; None disables it."""
    grace: float = 20.0
    """Seconds in-flight work may take to finish after SIGTERM (keep under the pod's grace)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be in [0, 65535], got {self.metrics_port}")
        if self.grace < 0:
            raise ValueError(f"grace must be >= 0, got {self.grace}")


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
        opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        server = grpc.aio.server(interceptors=[ErrorInterceptor(self.metrics)], options=opts)
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
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        logger.info("received %s", sig.name)
        if not stopping:
            stopping.add(asyncio.create_task(server.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)
    metrics = f", metrics on :{server.metrics_port}" if server.metrics_port is not None else ""
    print(f"acecoder executor listening on {server_config.host}:{server.port} "
          f"(jail: {server.service.jail}, workers: {config.workers}{metrics})", flush=True)
    if ready is not None:
        ready.set()
    await server.wait()
