"""Wiring the reward-model server: gRPC service, health, reflection, HTTP gateway, metrics,
loading the model in the background, and graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from acecoder.interceptor import ErrorInterceptor
from acecoder.serving import GRPC_OPTIONS, ServerConfig, stop_on_signals
from acecoder.v1 import reward_pb2, reward_pb2_grpc

from .config import RewardConfig
from .metrics import RewardMetrics
from .service import Backend, RewardService
from .servicer import RewardServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["RewardModel"].full_name


@dataclass(frozen=True, kw_only=True)
class RewardServerConfig(ServerConfig):
    port: int = 50052
    """gRPC port; 0 picks a free one."""
    http_port: int | None = None
    """Port of the OpenRLHF-compatible HTTP gateway (POST /get_reward); None disables it."""
    policy_template: str = "auto"
    """How the gateway finds question and response in a query: 'auto' (ChatML, then
    Llama-3), 'chatml', 'llama3', or a tokenizer directory whose chat template the policy
    used."""


class RewardServer:
    """A running reward server. `await start()` binds the ports (health NOT_SERVING) and
    loads the model in the background; `ready` is set once it serves."""

    def __init__(self, config: RewardConfig, server_config: RewardServerConfig, *,
                 backend: Backend | None = None) -> None:
        self.config = config
        self.server_config = server_config
        self.metrics = RewardMetrics()
        self.service = RewardService(config, metrics=self.metrics, backend=backend)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self._gateway: Any = None
        self._metrics_server: Any = None
        self._loading: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        server = grpc.aio.server(interceptors=[ErrorInterceptor(self.metrics)],
                                 options=GRPC_OPTIONS)
        reward_pb2_grpc.add_RewardModelServicer_to_server(RewardServicer(self.service), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        sc = self.server_config
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = server.add_insecure_port(f"{sc.host}:{sc.port}")
        if self.port == 0:
            raise RuntimeError(f"could not listen on {sc.host}:{sc.port}")
        await server.start()
        self.server = server
        if sc.metrics_port is not None:
            self._metrics_server, _ = start_http_server(
                sc.metrics_port, addr=sc.host, registry=self.metrics.registry)
            self.metrics_port = self._metrics_server.server_port
        if sc.http_port is not None:
            from .gateway import Gateway

            self._gateway = Gateway(self.service, policy_template=sc.policy_template,
                                    metrics=self.metrics)
            self.http_port = await self._gateway.start(sc.host, sc.http_port)
        self._loading = asyncio.create_task(self._load())

    async def _load(self) -> None:
        try:
            await self.service.start()
        except Exception as exc:
            logger.exception("could not load the reward model %s", self.config.model)
            self.failed = exc
            self.ready.set()
            return
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        d = self.service.description
        logger.info("serving %s (%s, %s, %s) on %s:%d", d.model_id, d.format, self.config.backend,
                    d.dtype, self.server_config.host, self.port)
        self.ready.set()

    async def stop(self) -> None:
        """Drain: health NOT_SERVING, refuse new work, finish admitted work within the grace."""
        if self.server is None or self._stopped.is_set():
            return
        logger.info("draining (grace %.1fs)", self.server_config.grace)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.service.begin_drain()
        await self.service.wait_idle(self.server_config.grace)
        if self._gateway is not None:
            await self._gateway.stop()
        await self.server.stop(grace=1.0)
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(BaseException):
                await self._loading
        await self.service.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self._stopped.set()
        logger.info("reward server stopped")

    async def wait(self) -> None:
        await self._stopped.wait()


async def serve(config: RewardConfig, server_config: RewardServerConfig) -> int:
    """Run until SIGTERM or SIGINT, then drain. Returns an exit status."""
    server = RewardServer(config, server_config)
    await server.start()
    stop_on_signals(server.stop)
    extra = "".join([
        f", http on :{server.http_port}" if server.http_port is not None else "",
        f", metrics on :{server.metrics_port}" if server.metrics_port is not None else ""])
    print(f"acecoder rm listening on {server_config.host}:{server.port} "
          f"(loading {config.model} with {config.backend}{extra})", flush=True)
    await server.ready.wait()
    if server.failed is not None:
        print(f"acecoder rm: could not load {config.model}: {server.failed}", flush=True)
        await server.stop()
        return 1
    d = server.service.description
    head = "trained head" if d.head_trained else "UNTRAINED head: scores carry no meaning yet"
    print(f"acecoder rm ready: {d.model_id} ({d.format}, {d.architecture}, {d.dtype}, "
          f"max {d.max_length} tokens, {head})", flush=True)
    await server.wait()
    return 0
