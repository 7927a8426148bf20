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
from tests.pki import CA, Issued

TRAINER = "trainer-token-0123456789abcdef"
RM = "rm-token-0123456789abcdef012345"
ONCE = RetryPolicy(attempts=1)
GOOD = "def add(a, b):\n    return a + b\n"


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
