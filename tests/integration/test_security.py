"""TLS, mutual TLS, bearer tokens and rate limits on real servers over loopback, with
certificates made in the test: what is let in, what is turned away and with which code, and a
server calling another secured one (the RM server running tests on a secured executor)."""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from acecoder.clients import ExecutorClient, RetryPolicy, RewardClient
from acecoder.security import ClientSecurity
from acecoder.serving import spawn_server
from acecoder.v1 import executor_pb2
from tests.pki import CA, Issued

TRAINER = "trainer-token-0123456789abcdef"
RM = "rm-token-0123456789abcdef012345"
ONCE = RetryPolicy(attempts=1)
GOOD = "def add(a, b):\n    return a + b\n"
QUESTION = "Write a function add(a, b) that returns the sum of a and b."


@dataclass
class PKI:
    ca: CA
    server: Issued
    client: Issued
    rogue_ca: CA
    rogue_client: Issued
    tokens: Path


@dataclass
class Secured:
    proc: subprocess.Popen[str]
    target: str
    health_port: int
    metrics: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    out = tmp_path_factory.mktemp("pki")
    ca, rogue = CA(out, "acecoder-ca"), CA(out, "rogue-ca")
    tokens = out / "tokens"
    tokens.write_text(f"# who may call\ntrainer {TRAINER}\nrm {RM}\n")
    return PKI(ca, ca.issue("executor", server=True), ca.issue("trainer", server=False), rogue,
               rogue.issue("intruder", server=False), tokens)


def start_secured(pki: PKI, *extra: str) -> Secured:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0", "--workers",
           "1", "--metrics-port", "0", "--tls-cert", str(pki.server.cert), "--tls-key",
           str(pki.server.key), "--tls-client-ca", str(pki.ca.files.cert), "--auth-tokens",
           str(pki.tokens), "--health-port", "0", *extra]
    proc, m = spawn_server(cmd, r"listening on (\S+) .*metrics on :(\d+), mutual TLS, "
                                r"2 bearer token\(s\), .*health on :(\d+)", "the executor")
    return Secured(proc, m.group(1), int(m.group(3)), f"http://127.0.0.1:{m.group(2)}/metrics")


@pytest.fixture(scope="module")
def secured(pki: PKI) -> Iterator[Secured]:
    s = start_secured(pki, "--rate-limit", "4", "--rate-burst", "4")
    yield s
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=60) == 0


def identity(pki: PKI, token: str | None = TRAINER, *, ca: CA | None = None,
             client: Issued | None = None) -> ClientSecurity:
    client = pki.client if client is None else client
    return ClientSecurity(ca=(ca or pki.ca).files.cert, cert=client.cert, key=client.key,
                          token=token)


def code_of(target: str, security: ClientSecurity) -> grpc.StatusCode:
    with ExecutorClient(target, timeout=10, retry=ONCE, security=security) as ex, \
            pytest.raises(grpc.RpcError) as err:
        ex.execute(GOOD, ["assert add(1, 2) == 3"])
    return err.value.code()


def test_mutual_tls_with_a_token_is_served(pki: PKI, secured: Secured) -> None:
    with ExecutorClient(secured.target, security=identity(pki)) as ex:
        assert ex.execute(GOOD, ["assert add(1, 2) == 3"]).pass_rate == 1.0
    # the same identity from the environment, as servers and trainers get it from Secrets
    env = {"ACECODER_TLS_CA": str(pki.ca.files.cert), "ACECODER_TLS_CERT": str(pki.client.cert),
           "ACECODER_TLS_KEY": str(pki.client.key), "ACECODER_TOKEN": RM}
    with ExecutorClient(secured.target, security=ClientSecurity.from_env(env)) as ex:
        assert ex.execute(GOOD, ["assert add(2, 2) == 4"]).pass_rate == 1.0


def test_handshakes_that_fail(pki: PKI, secured: Secured) -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    # the server's certificate is not from the CA the client trusts
    assert code_of(secured.target, identity(pki, ca=pki.rogue_ca)) == unavailable
    # mutual TLS: no client certificate, or one from a CA the server does not trust
    assert code_of(secured.target, ClientSecurity(ca=pki.ca.files.cert, token=TRAINER)) \
        == unavailable
    assert code_of(secured.target, identity(pki, client=pki.rogue_client)) == unavailable
    # plaintext to a TLS port
    assert code_of(secured.target, ClientSecurity(token=TRAINER)) == unavailable


def test_tokens_are_checked(pki: PKI, secured: Secured) -> None:
    for token, message in ((None, "needs a bearer token"),
                           ("x" * 30, "not one this server accepts"),
                           (TRAINER[:-1] + "g", "not one this server accepts")):
        with ExecutorClient(secured.target, timeout=10, retry=ONCE,
                            security=identity(pki, token)) as ex, \
                pytest.raises(grpc.RpcError) as err:
            ex.info()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert message in err.value.details()
    # streams are guarded too
    from acecoder.clients.executor import Program

    with ExecutorClient(secured.target, timeout=10, retry=ONCE,
                        security=identity(pki, None)) as ex, pytest.raises(grpc.RpcError) as err:
        list(ex.execute_batch([Program(GOOD, ["assert add(1, 2) == 3"])]))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    metrics = httpx.get(secured.metrics).text
    denied = re.findall(r'^acecoder_executor_requests_total\{(?=[^}]*code="UNAUTHENTICATED")'
                        r'[^}]*\} (\d+)', metrics, re.M)
    assert sum(float(n) for n in denied) >= 4, metrics


def test_health_needs_no_token(pki: PKI, secured: Secured) -> None:
    request = health_pb2.HealthCheckRequest(service="acecoder.v1.Executor")
    with grpc.insecure_channel(f"127.0.0.1:{secured.health_port}") as ch:  # kubelet's probe
        assert health_pb2_grpc.HealthStub(ch).Check(request, timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
    with identity(pki, token=None).channel(secured.target, []) as ch:  # TLS, no token
        assert health_pb2_grpc.HealthStub(ch).Check(request, timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{secured.health_port}") as ch:  # nothing else there
        from acecoder.v1 import executor_pb2, executor_pb2_grpc

        with pytest.raises(grpc.RpcError) as err:
            executor_pb2_grpc.ExecutorStub(ch).Info(executor_pb2.InfoRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_rate_limit_per_client(pki: PKI, secured: Secured) -> None:
    codes = []
    with ExecutorClient(secured.target, timeout=10, retry=ONCE,
                        security=identity(pki, RM)) as ex:
        for _ in range(12):
            try:
                ex.info()
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
                assert "rate limit: client rm" in exc.details()
    assert codes[:3] == ["OK"] * 3 and "RESOURCE_EXHAUSTED" in codes, codes
    with ExecutorClient(secured.target, timeout=10, retry=ONCE,
                        security=identity(pki, TRAINER)) as ex:  # another client's own bucket
        ex.info()


def test_without_tokens_a_client_is_its_certificate_or_its_address(pki: PKI) -> None:
    """Rate limits key on the client certificate's subject under mutual TLS, and on the
    address when nothing else names the client."""
    base = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
            "--workers", "1", "--rate-limit", "0.5", "--rate-burst", "2"]
    mtls = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
            "--tls-client-ca", str(pki.ca.files.cert)]
    for extra, security, who in (
            (mtls, ClientSecurity(ca=pki.ca.files.cert, cert=pki.client.cert,
                                  key=pki.client.key), "client cn:trainer"),
            ([], ClientSecurity(), "client ipv4:127.0.0.1")):
        proc, m = spawn_server([*base, *extra], r"listening on (\S+)", "the executor")
        try:
            with ExecutorClient(m.group(1), timeout=10, retry=ONCE, security=security) as ex:
                ex.info()
                ex.info()
                with pytest.raises(grpc.RpcError) as err:
                    ex.info()
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert who in err.value.details(), err.value.details()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0


def test_the_executor_will_not_be_open_beyond_loopback(pki: PKI) -> None:
    cli = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
           "--workers", "1"]
    refused = subprocess.run([*cli, "--host", "0.0.0.0"], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2
    assert "refusing to serve the executor on 0.0.0.0 without authentication" in refused.stderr
    bad = subprocess.run([*cli, "--tls-cert", str(pki.server.cert)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "needs both --tls-cert and --tls-key" in bad.stderr
    weak = pki.tokens.parent / "weak"
    weak.write_text("short\n")
    bad = subprocess.run([*cli, "--auth-tokens", str(weak)], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "16 characters or more" in bad.stderr
    for extra in (["--trust-network"], ["--auth-tokens", str(pki.tokens)]):
        proc, _ = spawn_server([*cli, "--host", "0.0.0.0", *extra], r"listening on (\S+)",
                               "the executor")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.mark.slow
def test_a_secured_rm_server_calling_a_secured_executor(pki: PKI, secured: Secured,
                                                        tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    """The RM server takes its client identity for the executor from the environment, and
    guards its own gRPC port and HTTP gateway with TLS (no client certificate asked) and
    tokens."""
    import os

    env = {**os.environ, "ACECODER_TLS_CA": str(pki.ca.files.cert),
           "ACECODER_TLS_CERT": str(pki.client.cert), "ACECODER_TLS_KEY": str(pki.client.key),
           "ACECODER_TOKEN": TRAINER, "ACECODER_AUTH_TOKENS": f"product={'p' * 24}"}
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0", "--http-port",
           "0", "--model", str(tiny_acecode_rm[0]), "--executor", secured.target,
           "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.search(r"listening on (\S+) .*http on :(\d+).*, TLS, 1 bearer token", first)
        assert m, first
        assert "ready" in proc.stdout.readline()
        target, http = m.group(1), f"https://127.0.0.1:{m.group(2)}/get_reward"
        product = ClientSecurity(ca=pki.ca.files.cert, token="p" * 24)
        with RewardClient(target, security=product) as rm:
            ranked = rm.rerank("Write add(a, b).", ["def add(a, b):\n    return a - b\n", GOOD],
                               tests=["assert add(1, 2) == 3"])
        assert ranked.best.index == 1 and ranked.best.pass_rate == 1.0
        with RewardClient(target, retry=ONCE,
                          security=ClientSecurity(ca=pki.ca.files.cert)) as rm, \
                pytest.raises(grpc.RpcError) as err:
            rm.score([("q", "r")])
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        body = {"query": ["<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nr<|im_end|>"]}
        ca = ssl.create_default_context(cafile=str(pki.ca.files.cert))
        denied = httpx.post(http, json=body, timeout=30, verify=ca)
        assert denied.status_code == 401 and denied.json()["code"] == "UNAUTHENTICATED"
        # OpenRLHF sends no headers: the token may ride in the URL
        ok = httpx.post(http + "?token=" + "p" * 24, json=body, timeout=30, verify=ca)
        assert ok.status_code == 200 and len(ok.json()["rewards"]) == 1
        ok = httpx.post(http, json=body, headers={"Authorization": "Bearer " + "p" * 24},
                        timeout=30, verify=ca)
        assert ok.status_code == 200, json.dumps(ok.json())
        with pytest.raises(httpx.ConnectError):  # a CA the client does not trust
            httpx.post(http, json=body, timeout=30,
                       verify=ssl.create_default_context(cafile=str(pki.rogue_ca.files.cert)))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


# -- hostile clients ---------------------------------------------------------------------------
# Each test names the mechanism it proves; every server here is a real process on loopback.

HASHED = "hash#in-the-middle-0123456789"  # a `#` inside a token is part of it
NAMES = ("batch", "shared", "stream", "mix", "utf8", "limits", "hostile")


def secret(name: str) -> str:
    return f"{name}-token-0123456789abcdef"


@pytest.fixture(scope="module")
def hostile_tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "tokens"
    path.write_text("# one line per client; whole-line comments only\n"
                    + "".join(f"{n} {secret(n)}\n" for n in NAMES) + f"hashed {HASHED}\n")
    return path


@pytest.fixture(scope="module")
def tokened(hostile_tokens: Path) -> Iterator[Secured]:
    """A plaintext executor with tokens, 2 items/s per client (bursts of 4)."""
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0", "--workers",
           "1", "--metrics-port", "0", "--auth-tokens", str(hostile_tokens), "--rate-limit", "2",
           "--rate-burst", "4"]
    proc, m = spawn_server(cmd, r"listening on (\S+) .*metrics on :(\d+)", "the executor")
    yield Secured(proc, m.group(1), 0, f"http://127.0.0.1:{m.group(2)}/metrics")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def raw_call(target: str, method: str, payload: bytes, token: str | None = None,
             stream: bool = False) -> tuple[str, str, dict[str, str]]:
    """(code, details, trailing metadata) of a call made of raw bytes."""
    meta = [("authorization", f"Bearer {token}")] if token else None
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as ch:
        try:
            if stream:
                list(ch.unary_stream(method)(payload, timeout=30, metadata=meta))
            else:
                ch.unary_unary(method)(payload, timeout=30, metadata=meta)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or "", dict(exc.trailing_metadata() or ())
    return "OK", "", {}


def test_an_unauthenticated_peer_costs_neither_its_bytes_nor_their_parsing(
        tokened: Secured) -> None:
    """Authentication runs on the metadata, before grpc reads the message: garbage and
    oversized messages without a token are UNAUTHENTICATED, and the server's memory does not
    grow by what they carried. With a token, garbage is INVALID_ARGUMENT, never UNKNOWN."""
    execute = "/acecoder.v1.Executor/Execute"
    assert raw_call(tokened.target, execute, b"\xff" * 64)[0] == "UNAUTHENTICATED"
    before = rss_mb(tokened.proc.pid)
    huge = b"\x0a" + b"\xff\xff\xff\x2f" + b"x" * (100 << 20)  # a 100 MB field
    for _ in range(3):
        code, details, _ = raw_call(tokened.target, execute, huge)
        assert code == "UNAUTHENTICATED", details
    grown = rss_mb(tokened.proc.pid) - before
    assert grown < 16, f"RSS grew {grown:.0f} MB on 300 MB of unauthenticated messages"
    code, details, _ = raw_call(tokened.target, execute, b"\xff" * 64, token=secret("batch"))
    assert (code, details) == ("INVALID_ARGUMENT",
                               "the request is not a valid acecoder.v1.ExecuteRequest message")
    bad_id = executor_pb2.ExecuteRequest(program=b"x", tests=[b"assert 1"],
                                         request_id="\xe9").SerializeToString()
    bad_id = bad_id.replace("\xe9".encode(), b"\xe9\x00")
    code, details, _ = raw_call(tokened.target, execute, bad_id, token=secret("batch"))
    assert code == "INVALID_ARGUMENT" and "ExecuteRequest.request_id is not valid UTF-8" in details
    metrics = httpx.get(tokened.metrics).text
    assert 'code="UNKNOWN"' not in metrics


def test_a_hash_inside_a_token_is_part_of_it(tokened: Secured) -> None:
    with ExecutorClient(tokened.target, timeout=30, retry=ONCE,
                        security=ClientSecurity(token=HASHED)) as ex:
        assert ex.info().version
    with ExecutorClient(tokened.target, timeout=30, retry=ONCE,
                        security=ClientSecurity(token=HASHED.split("#")[0])) as ex, \
            pytest.raises(grpc.RpcError) as err:
        ex.info()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_batch_costs_its_programs(tokened: Secured) -> None:
    """Burst 4 at 2 items/s: a batch of 5 programs is refused outright (no call may carry more
    than the burst), one of 4 empties the bucket, and the next call is told when to retry."""
    from acecoder.clients.executor import Program

    with ExecutorClient(tokened.target, timeout=60, retry=ONCE,
                        security=ClientSecurity(token=secret("batch"))) as ex:
        with pytest.raises(grpc.RpcError) as err:
            list(ex.execute_batch([Program(GOOD, ["assert add(1, 2) == 3"])] * 5))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "carries 5 items, more than the 4" in err.value.details()
        got = list(ex.execute_batch([Program(GOOD, ["assert add(1, 2) == 3"])] * 4))
        assert len(got) == 4 and all(r.all_passed for r in got)
    code, details, trailers = raw_call(tokened.target, "/acecoder.v1.Executor/Info", b"",
                                       token=secret("batch"))
    assert code == "RESOURCE_EXHAUSTED" and "rate limit: client batch" in details
    assert int(trailers["retry-after"]) == 1
    with ExecutorClient(tokened.target, timeout=30, retry=ONCE,
                        security=ClientSecurity(token=secret("shared"))) as ex:
        ex.info()  # another client's own bucket


def watch(target: str, service: str = "") -> int:
    """The first status grpc's health Watch streams."""
    with grpc.insecure_channel(target) as ch:
        stream = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=service), timeout=10)
        status = next(stream).status
        stream.cancel()
    return status


def test_health_watch_on_every_server(server, tokened: Secured) -> None:  # type: ignore[no-untyped-def]
    """grpc's own Watch writes with `context.write`; the interceptor once broke it with UNKNOWN
    on every service. It streams, with no token, on open and guarded servers alike (the RM
    and synthesis servers are watched in their own tests below and beside the jobs)."""
    for target in (server.target, tokened.target):
        assert watch(target, "acecoder.v1.Executor") == health_pb2.HealthCheckResponse.SERVING


def test_failed_authentications_are_limited_per_address(hostile_tokens: Path) -> None:
    """Past its budget of failed authentications, an address gets RESOURCE_EXHAUSTED (with a
    retry delay) for calls without a valid token; a client with one, behind the same address,
    is still served."""
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0", "--workers",
           "1", "--auth-tokens", str(hostile_tokens), "--auth-failures", "3"]
    proc, m = spawn_server(cmd, r"listening on (\S+)", "the executor")
    try:
        info = "/acecoder.v1.Executor/Info"
        codes = [raw_call(m.group(1), info, b"", token="guess-%018d" % i)[0] for i in range(5)]
        assert codes == ["UNAUTHENTICATED"] * 3 + ["RESOURCE_EXHAUSTED"] * 2, codes
        code, details, trailers = raw_call(m.group(1), info, b"")
        assert code == "RESOURCE_EXHAUSTED" and "too many failed authentications" in details
        assert int(trailers["retry-after"]) > 0
        assert raw_call(m.group(1), info, b"", token=secret("batch"))[0] == "OK"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@dataclass
class GuardedRM:
    proc: subprocess.Popen[str]
    target: str
    http: str
    metrics: str


@pytest.fixture(scope="module")
def guarded_rm(hostile_tokens: Path, server, tiny_acecode_rm) -> Iterator[GuardedRM]:  # type: ignore[no-untyped-def]
    """An RM server with its HTTP gateway (mixed rewards on the session's executor): tokens,
    1 item/s per client in bursts of 10 shared by both ports, 6 failed authentications per
    address, a 2 s header timeout and a 1 MB body cap."""
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0", "--http-port", "0",
           "--metrics-port", "0", "--model", str(tiny_acecode_rm[0]), "--executor",
           server.target, "--gateway-reward", "mix", "--auth-tokens", str(hostile_tokens),
           "--rate-limit", "1", "--rate-burst", "10", "--auth-failures", "6",
           "--http-header-timeout", "2", "--http-max-body-mb", "1"]
    proc, m = spawn_server(cmd, r"listening on (\S+) .*http on :(\d+), metrics on :(\d+)",
                           "the RM server")
    assert proc.stdout is not None and "ready" in proc.stdout.readline()
    yield GuardedRM(proc, m.group(1), f"http://127.0.0.1:{m.group(2)}",
                    f"http://127.0.0.1:{m.group(3)}/metrics")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def chatml(question: str, response: str) -> str:
    return (f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{response}"
            "<|im_end|>")


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(name)}"}


def from_address(address: str) -> httpx.Client:
    """An HTTP client whose connections come from `address` (any 127/8 one reaches loopback),
    so that an address's failed-authentication budget is its own."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


@pytest.mark.slow
def test_health_watch_on_the_rm_server(guarded_rm: GuardedRM) -> None:
    assert watch(guarded_rm.target, "acecoder.v1.RewardModel") == \
        health_pb2.HealthCheckResponse.SERVING


def test_every_http_route_but_health_needs_a_token(guarded_rm: GuardedRM) -> None:
    with from_address("127.0.0.5") as http:
        for method, path in (("GET", "/openapi.json"), ("HEAD", "/openapi.json"),
                             ("GET", "/docs"), ("GET", "/nowhere"), ("POST", "/get_reward")):
            r = http.request(method, guarded_rm.http + path)
            assert r.status_code == 401, (method, path, r.status_code)
        assert http.get(guarded_rm.http + "/health").status_code == 200
        assert http.get(guarded_rm.http + "/openapi.json", headers=bearer("limits")).json()[
            "info"]["title"] == "acecoder reward gateway"


def test_failed_authentications_over_http_are_limited_per_address(guarded_rm: GuardedRM
                                                                   ) -> None:
    body = {"query": [chatml(QUESTION, GOOD)], "labels": [["assert add(1, 2) == 3"]]}
    with from_address("127.0.0.9") as http:
        codes = [http.post(guarded_rm.http + "/get_reward", json=body,
                           headers={"Authorization": f"Bearer wrong-{i:020d}"}).status_code
                 for i in range(8)]
        assert codes == [401] * 6 + [429] * 2, codes
        locked = http.post(guarded_rm.http + "/get_reward", json=body)
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
        assert "too many failed authentications from ipv4:127.0.0.9" in locked.json()["error"]
        # a client with a valid token behind the same address is still served
        assert http.post(guarded_rm.http + "/get_reward", json=body,
                         headers=bearer("hostile")).status_code == 200
    # and the budget is the address's own
    with from_address("127.0.0.10") as http:
        assert http.post(guarded_rm.http + "/get_reward", json=body).status_code == 401


def test_one_bucket_per_client_across_grpc_and_http(guarded_rm: GuardedRM) -> None:
    """The gRPC port and the gateway charge one bucket per client, in items: 10 items over
    gRPC (burst 10, 1 item/s) empty the client's bucket, and its next call on either port is
    refused, over HTTP with 429 and a Retry-After that says when to come back."""
    with RewardClient(guarded_rm.target, timeout=60, retry=ONCE,
                      security=ClientSecurity(token=secret("shared"))) as rm:
        assert len(rm.score([(QUESTION, GOOD)] * 10)) == 10
        with pytest.raises(grpc.RpcError) as err:
            rm.score([(QUESTION, GOOD)])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    body = {"query": [chatml(QUESTION, GOOD)], "labels": [["assert add(1, 2) == 3"]]}
    r = httpx.post(guarded_rm.http + "/get_reward", json=body, headers=bearer("shared"),
                   timeout=30)
    assert r.status_code == 429 and r.json()["code"] == "RESOURCE_EXHAUSTED"
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    assert "rate limit: client shared" in r.json()["error"]
    r = httpx.post(guarded_rm.http + "/get_reward", json=body, headers=bearer("mix"), timeout=60)
    assert r.status_code == 200  # another client


def test_a_stream_is_charged_message_by_message(guarded_rm: GuardedRM) -> None:
    from acecoder.v1 import reward_pb2 as pb
    from acecoder.v1 import reward_pb2_grpc as pb_grpc

    one = pb.ScoreRequest(items=[pb.ScoreItem(question=QUESTION.encode(),
                                              response=GOOD.encode())])
    got = []
    with grpc.insecure_channel(guarded_rm.target) as ch:
        stream = pb_grpc.RewardModelStub(ch).ScoreStream(
            iter([one] * 200), timeout=60, metadata=[("authorization",
                                                      f"Bearer {secret('stream')}")])
        with pytest.raises(grpc.RpcError) as err:
            for response in stream:
                got.append(response)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    assert len(got) <= 11, len(got)


def test_invalid_utf8_in_a_score_item_is_invalid_argument(guarded_rm: GuardedRM) -> None:
    from acecoder.v1 import reward_pb2 as pb

    item = pb.ScoreItem(question=b"q", response=b"r", id="\xe9").SerializeToString()
    request = b"\x12" + bytes([len(item) + 1]) + item.replace("\xe9".encode(), b"\xe9\x00")
    code, details, _ = raw_call(guarded_rm.target, "/acecoder.v1.RewardModel/Score", request,
                                token=secret("utf8"))
    assert code == "INVALID_ARGUMENT"
    assert details.startswith("ScoreRequest.items[0].id is not valid UTF-8"), details


def test_one_bad_sample_fails_alone_in_the_mixed_gateway(guarded_rm: GuardedRM) -> None:
    test = "assert add(1, 2) == 3"
    body = {"query": [chatml(QUESTION, GOOD)] * 3, "labels": [[test], [""], [test] * 1001]}
    r = httpx.post(guarded_rm.http + "/get_reward", json=body, headers=bearer("mix"),
                   timeout=120)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["extra_logs"]["failed"] == [0.0, 1.0, 1.0]
    assert got["rewards"][0] >= 0.5 and got["extra_logs"]["pass_rate"][0] == 1.0
    assert "tests[0] is empty" in got["extra_logs"]["error"][1]
    assert "1000" in got["extra_logs"]["error"][2]


def _raw_http(port_url: str, data: bytes, wait: float = 10.0) -> bytes:
    """Send `data` on a fresh connection and return what comes back until the server closes
    it (or `wait` passes)."""
    import socket

    host, port = port_url.rsplit(":", 1)
    with socket.create_connection((host.split("//")[1], int(port)), timeout=wait) as s:
        try:
            s.sendall(data)
        except OSError:  # the server closed on us mid-send
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return out


@pytest.mark.slow
def test_the_gateway_bounds_what_a_client_can_hold(guarded_rm: GuardedRM) -> None:
    """Header timeout, header size cap, body cap from Content-Length (before reading), body
    cap on a chunked body, and a nesting bomb: each is answered (or closed) fast, and a
    well-behaved request is served meanwhile."""
    import socket
    import time

    host, port = "127.0.0.1", int(guarded_rm.http.rsplit(":", 1)[1])
    # 50 clients that send half a request, and one that trickles a byte every 0.3 s
    stalled = [socket.create_connection((host, port)) for _ in range(50)]
    for s in stalled:
        s.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\n")
    trickle = socket.create_connection((host, port))
    started = time.monotonic()
    body = {"query": [chatml(QUESTION, GOOD)], "labels": [["assert add(1, 2) == 3"]]}
    ok = httpx.post(guarded_rm.http + "/get_reward", json=body, headers=bearer("limits"),
                    timeout=30)
    assert ok.status_code == 200
    closed_at = None
    for ch in b"GET /health HTTP/1.1\r\nHost: x\r\n" * 4:
        try:
            trickle.sendall(bytes([ch]))
        except OSError:
            closed_at = time.monotonic() - started
            break
        time.sleep(0.3)
        trickle.setblocking(False)
        try:
            if trickle.recv(1) == b"":
                closed_at = time.monotonic() - started
                break
        except BlockingIOError:
            pass
        finally:
            trickle.setblocking(True)
    assert closed_at is not None and closed_at < 6, closed_at
    for s in stalled:
        s.settimeout(5)
        assert s.recv(1) == b""  # closed by the server, not by us
        s.close()
    trickle.close()
    # a 1 MB request line: refused without being read whole
    reply = _raw_http(guarded_rm.http, b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400") or reply == b"", reply[:100]
    # a 300 MB body announced: 413 from the headers alone (nothing of the body is sent)
    head = (f"POST /get_reward HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret('limits')}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {300 << 20}\r\n\r\n")
    reply = _raw_http(guarded_rm.http, head.encode(), wait=5)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # a chunked body that never says its length is cut at the cap
    r = httpx.post(guarded_rm.http + "/get_reward", headers=bearer("limits"), timeout=30,
                   content=(b"[" + b" " * 65536 for _ in range(40)))
    assert r.status_code == 413 and r.json()["code"] == "RESOURCE_EXHAUSTED"
    # a nesting bomb is a bad request, not a server error
    r = httpx.post(guarded_rm.http + "/get_reward", headers=bearer("limits"), timeout=30,
                   content=b"[" * 200_000 + b"]" * 200_000)
    assert r.status_code == 413 or (r.status_code == 400 and "not JSON" in r.json()["error"])
    r = httpx.post(guarded_rm.http + "/get_reward", headers=bearer("limits"), timeout=30,
                   content=b"[" * 100_000 + b"]" * 100_000)
    assert r.status_code == 400 and "not JSON" in r.json()["error"], r.text[:200]
    metrics = httpx.get(guarded_rm.metrics).text
    assert 'code="INTERNAL"' not in metrics and 'code="UNKNOWN"' not in metrics
