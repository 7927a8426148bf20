"""Wiring the reward-model server: gRPC service, health, reflection, HTTP gateway, metrics,
loading the model in the background, and graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import grpc

from acecoder.grpc_server import GrpcServer
from acecoder.serving import ServerConfig, stop_on_signals
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
    policy_template: str = "auto"
    """How the gateway finds question and response in a query: 'auto' (ChatML, then
    Llama-3), 'chatml', 'llama3', or a tokenizer directory whose chat template the policy
    used."""
    gateway_reward: str = "rm"
    """What the gateway answers with: rm (the model's score), rule (the executor's pass rate
    on the tests the labels carry) or mix."""
    gateway_binary: bool = False
    """rule/mix: 1.0 only when every test passes (AceCoder's RL reward)."""
    gateway_rm_weight: float = 0.5
    tests_file: str | None = None
    """AceCode-87K records whose ids the gateway's labels may name instead of tests."""


class RewardServer(GrpcServer):
    """A running reward server. `await start()` binds the ports (health NOT_SERVING) and
    loads the model in the background; `ready` is set once it serves."""

    service_name = SERVICE_NAME
    what = "reward server"
    costs = {"Score": lambda r: len(r.items), "ScoreStream": lambda r: len(r.items),
             "Rerank": lambda r: len(r.candidates)}

    def __init__(self, config: RewardConfig, server_config: RewardServerConfig, *,
                 backend: Backend | None = None) -> None:
        self.config = config
        self.server_config: RewardServerConfig = server_config
        metrics = RewardMetrics()
        self.service: RewardService = RewardService(config, metrics=metrics, backend=backend)
        super().__init__(server_config, metrics=metrics, registry=metrics.registry,
                         service=self.service)
        self.metrics: RewardMetrics = metrics
        self.http_port: int | None = None
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self._gateway: Any = None
        self._loading: asyncio.Task[None] | None = None

    def add_servicers(self, server: grpc.aio.Server) -> None:
        reward_pb2_grpc.add_RewardModelServicer_to_server(RewardServicer(self.service), server)

    async def start(self) -> None:
        await super().start()
        sc = self.server_config
        if sc.http_port is not None:
            from .gateway import Gateway, read_tests_file

            tests = read_tests_file(sc.tests_file) if sc.tests_file else None
            self._gateway = Gateway(self.service, policy_template=sc.policy_template,
                                    metrics=self.metrics, reward=sc.gateway_reward,
                                    binary=sc.gateway_binary, rm_weight=sc.gateway_rm_weight,
                                    tests=tests, security=sc.security, guard=self.guard,
                                    max_body_bytes=int(sc.http_max_body_mb * 1024 * 1024),
                                    header_timeout=sc.http_header_timeout)
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
        await self.set_serving(True)
        d = self.service.description
        logger.info("serving %s (%s, %s, %s) on %s:%d", d.model_id, d.format, self.config.backend,
                    d.dtype, self.server_config.host, self.port)
        self.ready.set()

    async def before_close(self) -> None:
        if self._gateway is not None:
            await self._gateway.stop()
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(BaseException):
                await self._loading


async def serve(config: RewardConfig, server_config: RewardServerConfig) -> int:
    """Run until SIGTERM or SIGINT, then drain. Returns an exit status."""
    server = RewardServer(config, server_config)
    await server.start()
    stop_on_signals(server.stop)
    extra = "".join([
        f", http on :{server.http_port}" if server.http_port is not None else "",
        f", metrics on :{server.metrics_port}" if server.metrics_port is not None else "",
        server.security_summary()])
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
