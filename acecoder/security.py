"""Transport security and access control of every acecoder gRPC server and client.

Server side (`ServerSecurity`, built from `acecoder serve ...` flags):
- TLS with `--tls-cert`/`--tls-key`; mutual TLS when `--tls-client-ca` is given (clients
  without a certificate signed by it fail the handshake);
- bearer tokens (`--auth-tokens FILE`, or ACECODER_AUTH_TOKENS): a call must carry
  `authorization: Bearer TOKEN` with a listed token, compared in constant time, or it gets
  UNAUTHENTICATED; the health service stays open (probes carry no token);
- a per-client rate limit (`--rate-limit R` calls/s, `--rate-burst B`): over it, a call gets
  RESOURCE_EXHAUSTED at once. A client is its token's name, else its certificate's subject,
  else its address;
- `--health-port`: the health service alone, plaintext, for kubelet's gRPC probes (which speak
  no TLS).

Client side (`ClientSecurity`): what a client presents. Every acecoder client (and so every
server that calls another: the RM server and the synthesis service call the executor) takes
it from the environment unless given one: ACECODER_TLS_CA (turns TLS on), ACECODER_TLS_CERT
and ACECODER_TLS_KEY (a client certificate, for mutual TLS), ACECODER_TLS_SERVER_NAME (the name
to check the server's certificate against, when it is not the target's host), ACECODER_TOKEN
or ACECODER_TOKEN_FILE.

Token files hold one token per line, `NAME TOKEN` or a bare `TOKEN` (named by its hash);
blank lines and `#` comments are skipped. ACECODER_AUTH_TOKENS is the same, comma-separated,
with `NAME=TOKEN` for named ones.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from acecoder.errors import ResourceExhausted, Unauthenticated

OPEN_METHODS = ("/grpc.health.v1.Health/",)
"""Calls that need no token (kubelet probes and load balancers cannot send one)."""


@dataclass(frozen=True)
class Token:
    name: str
    secret: bytes


def parse_tokens(text: str, *, separator: str = "\n", what: str = "tokens") -> tuple[Token, ...]:
    """Tokens from a token file's text (or ACECODER_AUTH_TOKENS with separator ',')."""
    out = []
    for n, raw in enumerate(text.split(separator), 1):
        line = raw.split("#", 1)[0].strip() if separator == "\n" else raw.strip()
        if not line:
            continue
        parts = line.split("=", 1) if separator == "," and "=" in line else line.split()
        if len(parts) == 1:
            secret = parts[0]
            name = "token-" + hashlib.sha256(secret.encode()).hexdigest()[:8]
        elif len(parts) == 2:
            name, secret = parts[0].strip(), parts[1].strip()
        else:
            raise ValueError(f"{what}, entry {n}: expected 'NAME TOKEN' or 'TOKEN', got "
                             f"{len(parts)} fields")
        if len(secret) < 16:
            raise ValueError(f"{what}, entry {n} ({name}): a token needs 16 characters or "
                             "more (e.g. `openssl rand -hex 32`)")
        out.append(Token(name, secret.encode()))
    return tuple(out)


def match_token(given: bytes, tokens: Sequence[Token]) -> Token | None:
    """The token `given` is, compared with every token in constant time (no early exit, so
    the time taken says nothing about which token, or how much of one, matched)."""
    found = None
    for t in tokens:
        if hmac.compare_digest(given, t.secret):
            found = t
    return found


class RateLimiter:
    """A token bucket per client: `rate` calls per second, bursts of `burst`."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 10000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            level, last = self._buckets.pop(client, (float(self.burst), now))
            level = min(float(self.burst), level + (now - last) * self.rate)
            ok = level >= 1.0
            self._buckets[client] = (level - 1.0 if ok else level, now)
            while len(self._buckets) > self.max_clients:  # forget the least recent
                self._buckets.popitem(last=False)
            return ok


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class ServerSecurity:
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    """Mutual TLS: clients must present a certificate this CA signed."""
    tokens: tuple[Token, ...] = ()
    """Bearer tokens accepted; none: no token is asked for."""
    rate_limit: float | None = None
    """Calls per second per client; None: no limit."""
    rate_burst: int | None = None
    """Calls a client may make at once after a quiet spell (default: 2 s worth, at least 1)."""
    health_port: int | None = None
    """A plaintext port with the health service alone (for kubelet's gRPC probes)."""
    trust_network: bool = False
    """Listen beyond loopback without authentication (only where the network is private)."""

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        for name in ("tls_cert", "tls_key", "client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"--{name.replace('_', '-')}: no such file: {path}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"--rate-limit must be > 0 calls/s, got {self.rate_limit}")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ValueError(f"--rate-burst must be >= 1, got {self.rate_burst}")
        if self.health_port is not None and not 0 <= self.health_port <= 65535:
            raise ValueError(f"--health-port must be in [0, 65535], got {self.health_port}")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def authenticates(self) -> bool:
        """Whether a caller must prove who it is (a token or a client certificate)."""
        return bool(self.tokens) or self.client_ca is not None

    def check_listen(self, host: str, what: str) -> None:
        """Refuse to serve `what` beyond loopback to anyone who asks, unless told the network
        is trusted."""
        if is_loopback(host) or self.authenticates or self.trust_network:
            return
        raise ValueError(
            f"refusing to serve the {what} on {host} without authentication: it runs code "
            "for whoever can reach it. Give --auth-tokens FILE (or ACECODER_AUTH_TOKENS) or "
            "--tls-client-ca (mutual TLS), listen on 127.0.0.1, or pass --trust-network if "
            "only trusted peers can reach this address (e.g. a NetworkPolicy guards it)")

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if not self.tls:
            return None
        assert self.tls_cert is not None and self.tls_key is not None
        pair = (Path(self.tls_key).read_bytes(), Path(self.tls_cert).read_bytes())
        ca = Path(self.client_ca).read_bytes() if self.client_ca is not None else None
        return grpc.ssl_server_credentials([pair], root_certificates=ca,
                                           require_client_auth=ca is not None)

    def interceptor(self) -> GuardInterceptor | None:
        if not self.tokens and self.rate_limit is None:
            return None
        limiter = None
        if self.rate_limit is not None:
            burst = self.rate_burst or max(1, int(2 * self.rate_limit))
            limiter = RateLimiter(self.rate_limit, burst)
        return GuardInterceptor(self.tokens, limiter)


def server_security(*, tls_cert: str | None = None, tls_key: str | None = None,
                    client_ca: str | None = None, tokens_file: str | None = None,
                    rate_limit: float | None = None, rate_burst: int | None = None,
                    health_port: int | None = None, trust_network: bool = False,
                    env: dict[str, str] | None = None) -> ServerSecurity:
    """ServerSecurity from command-line values (and ACECODER_AUTH_TOKENS when no file)."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    tokens: tuple[Token, ...] = ()
    if tokens_file:
        path = Path(tokens_file)
        if not path.is_file():
            raise ValueError(f"--auth-tokens: no such file: {path}")
        tokens = parse_tokens(path.read_text(), what=str(path))
        if not tokens:
            raise ValueError(f"--auth-tokens: {path} holds no token")
    elif env.get("ACECODER_AUTH_TOKENS"):
        tokens = parse_tokens(env["ACECODER_AUTH_TOKENS"], separator=",",
                              what="ACECODER_AUTH_TOKENS")
    return ServerSecurity(
        tls_cert=Path(tls_cert) if tls_cert else None, tls_key=Path(tls_key) if tls_key else None,
        client_ca=Path(client_ca) if client_ca else None, tokens=tokens, rate_limit=rate_limit,
        rate_burst=rate_burst, health_port=health_port, trust_network=trust_network)


def _client_of(context: grpc.aio.ServicerContext, token: Token | None) -> str:
    if token is not None:
        return token.name
    with_cert = context.auth_context().get("x509_common_name")
    if with_cert:
        return "cn:" + with_cert[0].decode(errors="replace")
    peer = context.peer()  # ipv4:127.0.0.1:5555, ipv6:[::1]:5555
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token and the client's rate before a call runs. Install it after
    the error interceptor, which turns its errors into status codes and counts them by code
    (`..._requests_total{code="UNAUTHENTICATED"}`)."""

    def __init__(self, tokens: Sequence[Token], limiter: RateLimiter | None) -> None:
        self.tokens = tuple(tokens)
        self.limiter = limiter

    def check(self, context: grpc.aio.ServicerContext) -> None:
        token = None
        if self.tokens:
            metadata = dict(context.invocation_metadata() or ())
            header = metadata.get("authorization", "")
            if isinstance(header, bytes):
                header = header.decode(errors="replace")
            if not header.lower().startswith("bearer "):
                raise Unauthenticated("this server needs a bearer token: send the metadata "
                                      "'authorization: Bearer TOKEN' (ACECODER_TOKEN for "
                                      "acecoder clients)")
            token = match_token(header[7:].strip().encode(), self.tokens)
            if token is None:
                raise Unauthenticated("the bearer token is not one this server accepts")
        if self.limiter is not None:
            client = _client_of(context, token)
            if not self.limiter.allow(client):
                raise ResourceExhausted(
                    f"rate limit: client {client} is over {self.limiter.rate:g} calls/s "
                    f"(bursts of {self.limiter.burst}); retry with backoff")

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_METHODS):
            return handler
        check = self.check
        kw = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                check(context)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, **kw)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                check(context)
                async for item in inner_stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(stream, **kw)
        if handler.stream_stream is not None:  # reflection
            inner_bidi = handler.stream_stream

            async def bidi(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                check(context)
                async for item in inner_bidi(requests, context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(bidi, **kw)
        return handler


# -- clients ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ClientSecurity:
    ca: Path | None = None
    """CA that signed the server's certificate; set, the channel speaks TLS."""
    cert: Path | None = None
    key: Path | None = None
    """The client's own certificate and key, for mutual TLS."""
    server_name: str | None = None
    """Name to check the server's certificate against (default: the target's host)."""
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key "
                             "(ACECODER_TLS_CERT and ACECODER_TLS_KEY)")
        if self.cert is not None and self.ca is None:
            raise ValueError("a client certificate needs TLS: give the CA (ACECODER_TLS_CA)")
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS {name}: no such file: {path}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ClientSecurity:
        env = os.environ if env is None else env  # type: ignore[assignment]

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        token = env.get("ACECODER_TOKEN") or None
        if token is None and env.get("ACECODER_TOKEN_FILE"):
            token = Path(env["ACECODER_TOKEN_FILE"]).read_text().strip() or None
        return cls(ca=path("ACECODER_TLS_CA"), cert=path("ACECODER_TLS_CERT"),
                   key=path("ACECODER_TLS_KEY"),
                   server_name=env.get("ACECODER_TLS_SERVER_NAME") or None, token=token)

    def _options(self, options: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        if self.server_name:
            return [*options, ("grpc.ssl_target_name_override", self.server_name)]
        return options

    def _credentials(self) -> grpc.ChannelCredentials:
        assert self.ca is not None
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca).read_bytes(),
            private_key=Path(self.key).read_bytes() if self.key else None,
            certificate_chain=Path(self.cert).read_bytes() if self.cert else None)

    def channel(self, target: str, options: list[tuple[str, Any]]) -> grpc.Channel:
        if self.ca is not None:
            ch = grpc.secure_channel(target, self._credentials(), options=self._options(options))
        else:
            ch = grpc.insecure_channel(target, options=options)
        if self.token:
            ch = grpc.intercept_channel(ch, _TokenInterceptor(self.token))
        return ch

    def aio_channel(self, target: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        interceptors = [_AioUnaryToken(self.token), _AioStreamToken(self.token)] \
            if self.token else None
        if self.ca is not None:
            return grpc.aio.secure_channel(target, self._credentials(),
                                           options=self._options(options),
                                           interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)


def _with_token(metadata: Any, token: str) -> list[tuple[str, str]]:
    return [*(metadata or ()), ("authorization", f"Bearer {token}")]


class _Details(collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                     "compression")), grpc.ClientCallDetails):
    pass


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, d: grpc.ClientCallDetails) -> _Details:
        return _Details(d.method, d.timeout, _with_token(d.metadata, self.token), d.credentials,
                        getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def _aio_details(d: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(d.method, d.timeout, _with_token(d.metadata, token),
                                      d.credentials, d.wait_for_ready)


class _AioUnaryToken(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str | None) -> None:
        self.token = token or ""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_aio_details(details, self.token), request)


class _AioStreamToken(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str | None) -> None:
        self.token = token or ""

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_aio_details(details, self.token), request)
