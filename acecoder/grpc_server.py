"""The grpc.aio server every acecoder service runs in: interceptor, health, reflection, the
Prometheus endpoint, and the drain on stop. A service's `main` subclasses `GrpcServer`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from acecoder.interceptor import Cost, RpcMetrics, ServiceInterceptor
from acecoder.serving import GRPC_OPTIONS, ServerConfig

logger = logging.getLogger(__name__)


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline as a time.monotonic() value, None when it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


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
    costs: dict[str, Cost] = {}
    """What a request message of each method costs in a client's rate bucket, by method name
    (default: 1)."""

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
        self.health_port: int | None = None
        self._health_server: grpc.aio.Server | None = None
        self._metrics_server: Any = None
        self._stopped = asyncio.Event()
        security = server_config.security
        self.guard = security.guard() if security is not None else None
        """Tokens and limits, shared by every port of this server (the RM's HTTP gateway too)."""

    def add_servicers(self, server: grpc.aio.Server) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Bind the gRPC port (and the metrics port), health NOT_SERVING."""
        from acecoder.security import ServerSecurity

        sc = self.server_config
        security = sc.security or ServerSecurity()
        server = grpc.aio.server(
            interceptors=[ServiceInterceptor(self.metrics, guard=self.guard, costs=self.costs)],
            options=GRPC_OPTIONS)
        self.add_servicers(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (self.service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        await self.set_serving(False)
        credentials = security.server_credentials()
        address = f"{sc.host}:{sc.port}"
        self.port = (server.add_secure_port(address, credentials) if credentials is not None
                     else server.add_insecure_port(address))
        if self.port == 0:
            raise RuntimeError(f"could not listen on {sc.host}:{sc.port}")
        await server.start()
        self.server = server
        if security.health_port is not None:  # plaintext, health alone: for kubelet probes
            probes = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, probes)
            self.health_port = probes.add_insecure_port(f"{sc.host}:{security.health_port}")
            if self.health_port == 0:
                raise RuntimeError(f"could not listen on {sc.host}:{security.health_port}")
            await probes.start()
            self._health_server = probes
        if sc.metrics_port is not None:
            self._metrics_server, _ = start_http_server(sc.metrics_port, addr=sc.host,
                                                        registry=self.registry)
            self.metrics_port = self._metrics_server.server_port

    def security_summary(self) -> str:
        """', TLS, 2 tokens, ...' for the listening line; empty when plaintext and open."""
        sec = self.server_config.security
        if sec is None:
            return ""
        parts = []
        if sec.tls:
            parts.append("mutual TLS" if sec.client_ca is not None else "TLS")
        if sec.tokens:
            parts.append(f"{len(sec.tokens)} bearer token(s)")
        if sec.rate_limit is not None:
            parts.append(f"{sec.rate_limit:g} items/s per client")
        if self.health_port is not None:
            parts.append(f"health on :{self.health_port}")
        return "".join(", " + x for x in parts)

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
        if self._health_server is not None:
            await self._health_server.stop(grace=None)
        await self.service.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self._stopped.set()
        logger.info("%s stopped", self.what)

    async def wait(self) -> None:
        await self._stopped.wait()
