"""Transport security and access control of every acecoder gRPC server and client.

Server side (`ServerSecurity`, built from `acecoder serve ...` flags):
- TLS with `--tls-cert`/`--tls-key`; mutual TLS when `--tls-client-ca` is given (clients
  without a certificate signed by it fail the handshake);
- bearer tokens (`--auth-tokens FILE`, or ACECODER_AUTH_TOKENS): a call must carry
  `authorization: Bearer TOKEN` with a listed token, compared in constant time, or it gets
  UNAUTHENTICATED; the health service stays open (probes carry no token);
- a per-client rate limit counted in items (`--rate-limit R` items/s, `--rate-burst B`, also
  the most one call may carry): a call costs what it carries (a ScoreRequest its items, an
  ExecuteBatch (or ExecuteBatchChunked) its programs, a stream each message as it arrives, a
  gateway request its queries), one bucket per client shared by the gRPC port and the HTTP
  gateway. Over it, a call gets RESOURCE_EXHAUSTED (HTTP 429 with Retry-After) at once. A
  client is its token's name, else its certificate's subject, else its address;
- failed authentications are limited per peer address (`--auth-failures` a minute): past
  them a call from that address without a valid token gets RESOURCE_EXHAUSTED (with a retry
  delay) until the budget refills. Calls with a valid token are still served: clients behind
  one address (a NAT, an ingress) must not be locked out by a stranger's bad guesses, and
  tokens of 16 characters or more are not found by guessing at any rate;
- `--health-port`: the health service alone, plaintext, for kubelet's gRPC probes (which speak
  no TLS).

Client side (`ClientSecurity`): what a client presents. Every acecoder client (and so every
server that calls another: the RM server and the synthesis service call the executor) takes
it from the environment unless given one: ACECODER_TLS_CA (turns TLS on), ACECODER_TLS_CERT
and ACECODER_TLS_KEY (a client certificate, for mutual TLS), ACECODER_TLS_SERVER_NAME (the name
to check the server's certificate against, when it is not the target's host), ACECODER_TOKEN
or ACECODER_TOKEN_FILE.

Token files hold one token per line, `NAME TOKEN` or a bare `TOKEN` (named by its hash),
fields separated by blanks. Blank lines are skipped, and so are comment lines: lines whose
first non-blank character is `#`. There are no trailing comments: a `#` anywhere else is part
of a name or token, and a line with more than two fields is an error. ACECODER_AUTH_TOKENS is
the same, comma-separated, with `NAME=TOKEN` for named ones (no comments).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from acecoder.errors import AcecoderError, ResourceExhausted, Unauthenticated


@dataclass(frozen=True)
class Token:
    name: str
    secret: bytes


def parse_tokens(text: str, *, separator: str = "\n", what: str = "tokens") -> tuple[Token, ...]:
    """Tokens from a token file's text (or ACECODER_AUTH_TOKENS with separator ',')."""
    out = []
    for n, raw in enumerate(text.split(separator), 1):
        line = raw.strip()
        if not line or (separator == "\n" and line.startswith("#")):
            continue
        parts = line.split("=", 1) if separator == "," and "=" in line else line.split()
        if len(parts) == 1:
            secret = parts[0]
            name = "token-" + hashlib.sha256(secret.encode()).hexdigest()[:8]
        elif len(parts) == 2:
            name, secret = parts[0].strip(), parts[1].strip()
        else:
            raise ValueError(f"{what}, entry {n}: expected 'NAME TOKEN' or 'TOKEN', got "
                             f"{len(parts)} fields (comments are whole lines starting with #)")
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
    """A token bucket per client: `rate` units per second, bursts of `burst`. A call may cost
    more than one unit (a request of N items costs N); it is let in when the client's bucket
    holds its cost, and a call that costs more than the whole burst is never let in."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 10000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, cost: float = 1.0, now: float | None = None) -> float:
        """Charge `cost` to `client`: 0.0 when let in, else the seconds until it would be
        (infinite when `cost` is over the burst)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            level, last = self._buckets.pop(client, (float(self.burst), now))
            level = min(float(self.burst), level + (now - last) * self.rate)
            if cost > self.burst:
                wait = math.inf
            else:
                wait = 0.0 if level >= cost else (cost - level) / self.rate
            self._buckets[client] = (level - cost if wait == 0.0 else level, now)
            while len(self._buckets) > self.max_clients:  # forget the least recent
                self._buckets.popitem(last=False)
            return wait

    def allow(self, client: str, now: float | None = None) -> bool:
        return self.take(client, 1.0, now) == 0.0


AUTH_FAILURES_PER_MINUTE = 30
"""Failed authentications a peer address may make a minute (bursts of as many) by default."""


def peer_address(peer: str) -> str:
    """A client's address without its port, the same for gRPC and HTTP: gRPC's
    'ipv4:127.0.0.1:5555' and HTTP's ('127.0.0.1', 5555) are both 'ipv4:127.0.0.1';
    'ipv6:[::1]:5555' is 'ipv6:[::1]'."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
    if peer.startswith("unix:") or not peer:
        return peer or "?"
    try:
        ip = ipaddress.ip_address(peer.strip("[]"))
    except ValueError:
        return peer
    return f"ipv4:{ip}" if ip.version == 4 else f"ipv6:[{ip}]"


class Guard:
    """Who may call and how much, for every port of a server (gRPC and HTTP share one): the
    bearer tokens, the per-client bucket counted in items, and the per-address budget of
    failed authentications. Raises acecoder errors; the gRPC interceptor and the HTTP gateway
    turn them into their own status codes."""

    def __init__(self, tokens: Sequence[Token], limiter: RateLimiter | None, *,
                 failures: RateLimiter | None = None) -> None:
        self.tokens = tuple(tokens)
        self.limiter = limiter
        self.failures = failures if failures is not None else RateLimiter(
            AUTH_FAILURES_PER_MINUTE / 60.0, AUTH_FAILURES_PER_MINUTE)

    @property
    def needs_token(self) -> bool:
        return bool(self.tokens)

    def authenticate(self, header: str | bytes | None, *, query_token: str = "") -> Token | None:
        """The token an `authorization: Bearer T` header (or, for HTTP callers that send no
        headers, a `?token=T`) names; None when this server asks for none."""
        if not self.tokens:
            return None
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        header = header or ""
        given = header[7:].strip() if header.lower().startswith("bearer ") else query_token
        if not given:
            raise Unauthenticated("this server needs a bearer token: send the metadata "
                                  "'authorization: Bearer TOKEN' (ACECODER_TOKEN for acecoder "
                                  "clients; ?token=TOKEN in the URL over HTTP)")
        token = match_token(given.encode("utf-8", "surrogateescape"), self.tokens)
        if token is None:
            raise Unauthenticated("the bearer token is not one this server accepts")
        return token

    def failed(self, address: str, exc: Unauthenticated) -> AcecoderError:
        """What to answer a failed authentication from `address`: `exc` itself within the
        address's budget, RESOURCE_EXHAUSTED past it."""
        wait = self.failures.take(address)
        if wait == 0.0:
            return exc
        return ResourceExhausted(
            f"too many failed authentications from {address}: calls without a valid token "
            f"are refused for {wait:.0f}s more", retry_after=wait)

    def charge(self, client: str, cost: int) -> None:
        """Charge `cost` items to `client`'s bucket, or raise RESOURCE_EXHAUSTED."""
        if self.limiter is None:
            return
        cost = max(cost, 1)
        wait = self.limiter.take(client, float(cost))
        if wait == math.inf:
            raise ResourceExhausted(
                f"rate limit: this call carries {cost} items, more than the "
                f"{self.limiter.burst} a client may send at once; split it into smaller calls")
        if wait > 0.0:
            raise ResourceExhausted(
                f"rate limit: client {client} is over {self.limiter.rate:g} items/s (bursts "
                f"of {self.limiter.burst}); retry in {wait:.1f}s", retry_after=wait)


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
    """Items per second per client (a call costs the items it carries); None: no limit."""
    rate_burst: int | None = None
    """Items a client may send at once after a quiet spell (default: 2 s worth, at least 1)."""
    auth_failures: float = AUTH_FAILURES_PER_MINUTE
    """Failed authentications a peer address may make a minute before all its calls are
    refused (until the budget refills)."""
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
            raise ValueError(f"--rate-limit must be > 0 items/s, got {self.rate_limit}")
        if not self.auth_failures >= 1:
            raise ValueError(f"--auth-failures must be >= 1 a minute, got {self.auth_failures}")
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

    def guard(self) -> Guard | None:
        """A fresh Guard for one server (all its ports share it); None when it checks nothing."""
        if not self.tokens and self.rate_limit is None:
            return None
        limiter = None
        if self.rate_limit is not None:
            burst = self.rate_burst or max(1, int(2 * self.rate_limit))
            limiter = RateLimiter(self.rate_limit, burst)
        per_minute = self.auth_failures
        return Guard(self.tokens, limiter,
                     failures=RateLimiter(per_minute / 60.0, max(1, int(per_minute))))


def server_security(*, tls_cert: str | None = None, tls_key: str | None = None,
                    client_ca: str | None = None, tokens_file: str | None = None,
                    rate_limit: float | None = None, rate_burst: int | None = None,
                    health_port: int | None = None, trust_network: bool = False,
                    auth_failures: float | None = None,
                    env: Mapping[str, str] | None = None) -> ServerSecurity:
    """ServerSecurity from command-line values (and ACECODER_AUTH_TOKENS when no file)."""
    env = os.environ if env is None else env
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
        rate_burst=rate_burst, health_port=health_port, trust_network=trust_network,
        auth_failures=AUTH_FAILURES_PER_MINUTE if auth_failures is None else auth_failures)


def client_name(token: Token | None, common_name: str | None, address: str) -> str:
    """Whose bucket a call is charged to: its token's name, else its client certificate's
    subject, else its address (`peer_address`)."""
    if token is not None:
        return token.name
    if common_name:
        return "cn:" + common_name
    return address


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
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSecurity:
        env = os.environ if env is None else env

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        token = env.get("ACECODER_TOKEN") or None
        if token is None and env.get("ACECODER_TOKEN_FILE"):
            token = Path(env["ACECODER_TOKEN_FILE"]).read_text().strip() or None
        return cls(ca=path("ACECODER_TLS_CA"), cert=path("ACECODER_TLS_CERT"),
                   key=path("ACECODER_TLS_KEY"),
                   server_name=env.get("ACECODER_TLS_SERVER_NAME") or None, token=token)

    def _options(self, target: str, options: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        name = self.server_name or list_host(target)
        if name:
            return [*options, ("grpc.ssl_target_name_override", name)]
        return options

    def _credentials(self) -> grpc.ChannelCredentials:
        assert self.ca is not None
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca).read_bytes(),
            private_key=Path(self.key).read_bytes() if self.key else None,
            certificate_chain=Path(self.cert).read_bytes() if self.cert else None)

    def channel(self, target: str, options: list[tuple[str, Any]]) -> grpc.Channel:
        if self.ca is not None:
            ch = grpc.secure_channel(target, self._credentials(),
                                    options=self._options(target, options))
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
                                           options=self._options(target, options),
                                           interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)


def list_host(target: str) -> str | None:
    """The host every address of an `ipv4:`/`ipv6:` list target names, which TLS checks each
    replica's certificate against (gRPC would check the whole list as one name); None for
    other targets. ValueError when the addresses differ: one channel checks one name, so give
    ClientSecurity.server_name (ACECODER_TLS_SERVER_NAME), a name every certificate carries."""
    scheme, _, rest = target.partition(":")
    if scheme not in ("ipv4", "ipv6") or not rest:
        return None
    hosts = set()
    for address in rest.lstrip("/").split(","):
        if address.startswith("["):
            hosts.add(address[1:].partition("]")[0])
        elif scheme == "ipv4":
            hosts.add(address.partition(":")[0])
        else:
            hosts.add(address)
    if len(hosts) != 1:
        raise ValueError(
            f"TLS to {target}: its replicas are at different addresses "
            f"({', '.join(sorted(hosts))}) and a channel checks one name on every replica's "
            "certificate: set ACECODER_TLS_SERVER_NAME (ClientSecurity.server_name) to a name "
            "all their certificates carry")
    return hosts.pop()


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
