"""Plumbing every acecoder server shares: listen config, admission with drain, the SIGTERM
handler. (The gRPC interceptor is in `interceptor`, so that this module stays free of grpc.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from acecoder.errors import Unavailable

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MESSAGE_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
"""Message sizes, the same for servers and clients."""
GRPC_OPTIONS = [
    *MESSAGE_OPTIONS,
    # What one connection may hold: calls at once, and its lifetime. A connection older than
    # 5 minutes (gRPC adds +-10% jitter) is sent GOAWAY and its calls get 5 more minutes, so a
    # call left open without a deadline cannot hold server resources forever. The client
    # reconnects at once and looks its `dns:///` target up again: replicas added since (an
    # autoscaler's) get their share of its calls within those 5 minutes.
    ("grpc.max_concurrent_streams", 1000),
    ("grpc.max_connection_age_ms", 5 * 60 * 1000),
    ("grpc.max_connection_age_grace_ms", 5 * 60 * 1000),
]


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
    security: Any = None
    """`acecoder.security.ServerSecurity` (TLS, tokens, rate limit); None: plaintext, open."""
    http_port: int | None = None
    """Port of the server's HTTP front (the RM server's OpenRLHF gateway, the executor's
    SandboxFusion-compatible /run_code), with the gRPC port's TLS and tokens; None disables it."""
    http_max_body_mb: float = 64.0
    """The HTTP front's largest request body; larger is refused (413) before it is read."""
    http_header_timeout: float = 10.0
    """Seconds an HTTP connection has to send a request's headers; then it is closed."""

    def __post_init__(self) -> None:
        for name in ("port", "metrics_port", "http_port"):
            value = getattr(self, name, None)
            if value is not None and not 0 <= value <= 65535:
                raise ValueError(f"{name} must be in [0, 65535], got {value}")
        if self.grace < 0:
            raise ValueError(f"grace must be >= 0, got {self.grace}")
        if not (self.http_max_body_mb > 0 and self.http_header_timeout > 0):
            raise ValueError(f"http_max_body_mb and http_header_timeout must be > 0, got "
                             f"{self.http_max_body_mb} and {self.http_header_timeout}")


class Admission:
    """Counts admitted requests so that a drain can wait for them; refuses new ones once
    draining has begun."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.admitted = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self) -> None:
        if self.draining:
            raise Unavailable(f"the {self.what} is draining for shutdown; retry on another "
                              "replica")
        self.admitted += 1
        self._idle.clear()

    def release(self) -> None:
        self.admitted -= 1
        if self.admitted == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False


def stop_on_signals(stop: Callable[[], Awaitable[None]]) -> None:
    """Run `stop()` once, on the first SIGTERM or SIGINT, in the running loop."""
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        logger.info("received %s", sig.name)
        if not stopping:
            stopping.add(asyncio.ensure_future(stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)


def spawn_server(cmd: list[str], pattern: str, what: str
                 ) -> tuple[subprocess.Popen[str], re.Match[str]]:
    """Start a server process and read its first line of stdout, which must match `pattern`
    (every acecoder server prints "acecoder NAME listening on HOST:PORT ..." once bound)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(pattern, line)
    if not m:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{what} did not start (said: {line!r})")
    return proc, m
