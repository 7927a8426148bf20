"""The grpc.aio server every acecoder service runs in: interceptor, health, reflection, the
Prometheus endpoint, and the drain on stop. A service's `main` subclasses `GrpcServer`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from acecoder.interceptor import ErrorInterceptor, RpcMetrics
from acecoder.serving import GRPC_OPTIONS, ServerConfig

logger = logging.getLogger(__name__)


class Drainable(Protocol):
    """What the server needs from a service to shut it down gracefully."""

    def begin_drain(self) -> None: ...

    async def wait_idle(self, timeout: float) -> bool: ...

    async def close(self) -> None: ...


class GrpcServer:
    """Health is NOT_SERVING from `start()` until `set_serving(True)`; `stop()` drains: health
    NOT_SERVING, new work refused, admitted work given the grace, then the service closed."""

    service_name: str
    """Full gRPC name of the service, for health and reflection."""
    what = "server"

    def __init__(self, server_config: ServerConfig, *, metrics: RpcMetrics, registry: Any,
                 service: Drainable) -> None:
        self.server_config = server_config
        self.metrics = metrics
        self.registry = registry
        self.service = service
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics_port: int | None = None
        self._metrics_server: Any = None
        self._stopped = asyncio.Event()

    def add_servicers(self, server: grpc.aio.Server) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Bind the gRPC port (and the metrics port), health NOT_SERVING."""
        server = grpc.aio.server(interceptors=[ErrorInterceptor(self.metrics)],
                                 options=GRPC_OPTIONS)
        self.add_servicers(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (self.service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        await self.set_serving(False)
        sc = self.server_config
        self.port = server.add_insecure_port(f"{sc.host}:{sc.port}")
        if self.port == 0:
            raise RuntimeError(f"could not listen on {sc.host}:{sc.port}")
        await server.start()
        self.server = server
        if sc.metrics_port is not None:
            self._metrics_server, _ = start_http_server(sc.metrics_port, addr=sc.host,
                                                        registry=self.registry)
            self.metrics_port = self._metrics_server.server_port

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", self.service_name):
            await self.health.set(name, status)

    async def before_close(self) -> None:
        """Hook: what to stop between the drain and closing the service."""

    async def stop(self) -> None:
        if self.server is None or self._stopped.is_set():
            return
        logger.info("draining (grace %.1fs)", self.server_config.grace)
        await self.set_serving(False)
        self.service.begin_drain()
        await self.service.wait_idle(self.server_config.grace)
        await self.before_close()
        await self.server.stop(grace=1.0)
        await self.service.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self._stopped.set()
        logger.info("%s stopped", self.what)

    async def wait(self) -> None:
        await self._stopped.wait()
