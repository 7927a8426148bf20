"""Wiring the synthesis server: gRPC service, health, reflection, metrics, the executor
client, resuming jobs at start, and graceful drain."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from acecoder.clients import AsyncExecutorClient
from acecoder.grpc_server import GrpcServer
from acecoder.serving import ServerConfig, stop_on_signals
from acecoder.v1 import synthesis_pb2, synthesis_pb2_grpc

from .llm import Chat
from .metrics import SynthMetrics
from .service import SynthesisService, SynthServiceConfig
from .servicer import SynthesisServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = synthesis_pb2.DESCRIPTOR.services_by_name["Synthesis"].full_name


@dataclass(frozen=True, kw_only=True)
class SynthServerConfig(ServerConfig):
    port: int = 50053
    """gRPC port; 0 picks a free one."""


class SynthServer(GrpcServer):
    """A running synthesis server. `await start()` loads in-process models, builds the
    benchmark index and resumes unfinished jobs, then serves."""

    service_name = SERVICE_NAME
    what = "synthesis server"

    def __init__(self, config: SynthServiceConfig, server_config: SynthServerConfig, *,
                 llm: Chat, proxy: Chat, executor: str, llm_name: str = "llm") -> None:
        self.config = config
        self.executor_target = executor
        self.executor = AsyncExecutorClient(executor, timeout=600)
        metrics = SynthMetrics()
        self.service: SynthesisService = SynthesisService(
            config, llm=llm, proxy=proxy, executor=self.executor, metrics=metrics,
            llm_name=llm_name)
        super().__init__(server_config, metrics=metrics, registry=metrics.registry,
                         service=self.service)

    def add_servicers(self, server: grpc.aio.Server) -> None:
        synthesis_pb2_grpc.add_SynthesisServicer_to_server(SynthesisServicer(self.service),
                                                           server)

    async def start(self) -> None:
        await super().start()
        for chat in {id(c): c for c in (self.service.llm, self.service.proxy)}.values():
            load = getattr(chat, "load", None)
            if load is not None:  # in-process models: load before serving
                await asyncio.to_thread(load)
        await self.service.start()
        await self.set_serving(True)

    async def before_close(self) -> None:
        # jobs stop first (their saved state stays RUNNING, so they resume at the next
        # start), and only then does their executor go
        await self.service.jobs.close()
        await self.executor.close()


async def serve(config: SynthServiceConfig, server_config: SynthServerConfig, *, llm: Chat,
                proxy: Chat, executor: str, llm_name: str = "llm") -> int:
    """Run until SIGTERM or SIGINT, then drain. Returns an exit status."""
    server = SynthServer(config, server_config, llm=llm, proxy=proxy, executor=executor,
                         llm_name=llm_name)
    await server.start()
    stop_on_signals(server.stop)
    metrics = f", metrics on :{server.metrics_port}" if server.metrics_port is not None else ""
    jobs = server.service.jobs.counts()
    print(f"acecoder synth listening on {server_config.host}:{server.port} "
          f"(executor {executor}, jobs in {config.state_dir}, data in {config.data_dir}, "
          f"{jobs['RUNNING'] + jobs['QUEUED']} job(s) resumed{metrics}"
          f"{server.security_summary()})", flush=True)
    await server.wait()
    return 0
