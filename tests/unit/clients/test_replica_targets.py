"""Targets that name many replicas, against tiny real servers in this process: a `dns://`
target spreads calls over every address a (fake) DNS server gives, finds a replica added to
DNS once a connection reaches its maximum age, and skips a replica whose health is not
SERVING; TLS to an `ipv4:` list checks one name; a retried SubmitJob carries one job id."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from acecoder.clients import ExecutorClient, RetryPolicy, SynthesisClient
from acecoder.clients.base import channel_options
from acecoder.security import ClientSecurity, list_host
from acecoder.v1 import executor_pb2 as pb
from acecoder.v1 import executor_pb2_grpc as pb_grpc
from acecoder.v1 import synthesis_pb2 as spb
from acecoder.v1 import synthesis_pb2_grpc as spb_grpc
from tests.conftest import blocking_health

EXECUTOR = "acecoder.v1.Executor"


class FakeDNS:
    """A DNS server on loopback (UDP) answering every A query with `addresses`."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:  # closed
                return
            end = 12
            while query[end]:
                end += query[end] + 1
            qtype = struct.unpack(">H", query[end + 1:end + 3])[0]
            question = query[12:end + 5]
            answers = [b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 1, 4) + socket.inet_aton(a)
                       for a in (list(self.addresses) if qtype == 1 else [])]
            header = query[:2] + struct.pack(">HHHHH", 0x8180, 1, len(answers), 0, 0)
            self.sock.sendto(header + question + b"".join(answers), peer)

    def close(self) -> None:
        self.sock.close()


class Replica(pb_grpc.ExecutorServicer):
    def __init__(self, host: str, hits: Counter[str]) -> None:
        self.host = host
        self.hits = hits

    def Execute(self, request, context):  # type: ignore[no-untyped-def]
        self.hits[self.host] += 1
        return pb.ExecuteResponse(request_id=request.request_id, all_passed=True, pass_rate=1.0,
                                  results=[pb.TestResult(verdict=pb.PASSED)], status=pb.OK)


class Replicas:
    """Executor replicas on 127.0.0.2, .3, ... sharing one port (as pods share theirs)."""

    def __init__(self, n: int, *, max_age_ms: int | None = None) -> None:
        self.hits: Counter[str] = Counter()
        self.health: dict[str, health.HealthServicer] = {}
        self.servers: list[grpc.Server] = []
        self.pools: list[futures.ThreadPoolExecutor] = []
        self.port = 0
        options = [] if max_age_ms is None else [("grpc.max_connection_age_ms", max_age_ms),
                                                 ("grpc.max_connection_age_grace_ms", 1000)]
        for k in range(n):
            host = f"127.0.0.{k + 2}"
            pool = futures.ThreadPoolExecutor(16)
            self.pools.append(pool)
            server = grpc.server(pool, options=options)
            pb_grpc.add_ExecutorServicer_to_server(Replica(host, self.hits), server)
            checks = blocking_health()
            health_pb2_grpc.add_HealthServicer_to_server(checks, server)
            checks.set(EXECUTOR, health_pb2.HealthCheckResponse.SERVING)
            port = server.add_insecure_port(f"{host}:{self.port}")
            if port == 0:
                pytest.skip(f"cannot listen on {host}:{self.port}")
            self.port = port
            server.start()
            self.servers.append(server)
            self.health[host] = checks

    @property
    def hosts(self) -> list[str]:
        return list(self.health)

    def stop(self) -> None:
        for s in self.servers:
            s.stop(0).wait(10)
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def dns() -> Iterator[FakeDNS]:
    server = FakeDNS()
    yield server
    server.close()


def call(client: ExecutorClient, n: int) -> None:
    for _ in range(n):
        assert client.execute("x = 1", ["assert x"], deadline=5).all_passed


def test_a_dns_target_spreads_calls_over_every_address(dns: FakeDNS) -> None:
    replicas = Replicas(3)
    dns.addresses = replicas.hosts
    try:
        with ExecutorClient(f"dns://127.0.0.1:{dns.port}/replicas.test:{replicas.port}") as c:
            call(c, 60)
        assert sorted(replicas.hits) == replicas.hosts
        assert all(12 <= n <= 28 for n in replicas.hits.values()), replicas.hits
    finally:
        replicas.stop()


def test_a_replica_that_is_not_serving_gets_no_calls() -> None:
    replicas = Replicas(3)
    try:
        target = "ipv4:" + ",".join(f"{h}:{replicas.port}" for h in replicas.hosts)
        with ExecutorClient(target) as c:
            call(c, 30)
            assert all(replicas.hits[h] > 0 for h in replicas.hosts)
            loading = replicas.hosts[0]
            replicas.health[loading].set(EXECUTOR, health_pb2.HealthCheckResponse.NOT_SERVING)
            time.sleep(0.3)  # the channel's Watch of that replica hears it
            replicas.hits.clear()
            call(c, 30)
            assert replicas.hits[loading] == 0 and sum(replicas.hits.values()) == 30
            replicas.health[loading].set(EXECUTOR, health_pb2.HealthCheckResponse.SERVING)
            time.sleep(0.3)
            replicas.hits.clear()
            call(c, 30)
            assert replicas.hits[loading] > 0  # back in rotation
    finally:
        replicas.stop()


@pytest.mark.slow
def test_a_replica_added_to_dns_gets_calls_after_a_connection_ages_out(dns: FakeDNS) -> None:
    """What makes an autoscaler's new pods useful to clients that are already connected: the
    server's max connection age sends GOAWAY, and the client looks the name up again."""
    replicas = Replicas(3, max_age_ms=1000)
    new = replicas.hosts[2]
    dns.addresses = replicas.hosts[:2]
    try:
        with ExecutorClient(f"dns://127.0.0.1:{dns.port}/replicas.test:{replicas.port}") as c:
            call(c, 10)
            assert replicas.hits[new] == 0
            dns.addresses = replicas.hosts
            end = time.monotonic() + 20
            while replicas.hits[new] == 0:
                assert time.monotonic() < end, f"never found the new replica: {replicas.hits}"
                call(c, 1)
                time.sleep(0.05)
    finally:
        replicas.stop()


def test_channel_options_name_the_service_whose_health_counts() -> None:
    import json

    options = dict(channel_options(EXECUTOR))
    config = json.loads(options["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": EXECUTOR}
    assert "methodConfig" not in config  # no retries inside gRPC: the clients' are the only ones
    assert ExecutorClient.service == EXECUTOR and SynthesisClient.service == "acecoder.v1.Synthesis"


def test_tls_to_a_list_checks_the_one_host_it_names(tmp_path: Path) -> None:
    assert list_host("ipv4:127.0.0.1:50061,127.0.0.1:50062") == "127.0.0.1"
    assert list_host("ipv6:[::1]:50061,[::1]:50062") == "::1"
    assert list_host("dns:///executor-headless:50051") is None
    assert list_host("localhost:50051") is None
    from tests.pki import CA

    ca = CA(tmp_path, "ca").files.cert
    spread = "ipv4:10.0.0.1:50051,10.0.0.2:50051"
    with pytest.raises(ValueError, match=r"different addresses \(10.0.0.1, 10.0.0.2\).*"
                                         "ACECODER_TLS_SERVER_NAME"):
        ExecutorClient(spread, security=ClientSecurity(ca=ca))
    ExecutorClient(spread, security=ClientSecurity(ca=ca, server_name="executor")).close()
    ExecutorClient(spread, security=ClientSecurity()).close()  # plaintext checks no name


class LossyJobs(spb_grpc.SynthesisServicer):
    """Starts the job, then loses the reply (UNAVAILABLE) the first time."""

    def __init__(self) -> None:
        self.job_ids: list[str] = []
        self.lost = False

    def SubmitJob(self, request, context):  # type: ignore[no-untyped-def]
        self.job_ids.append(request.job_id)
        if not self.lost:
            self.lost = True
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")
        return spb.Job(job_id=request.job_id, state=spb.JOB_RUNNING)


def test_a_retried_submit_carries_the_same_job_id() -> None:
    jobs = LossyJobs()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    spb_grpc.add_SynthesisServicer_to_server(jobs, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        fast = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)
        with SynthesisClient(f"127.0.0.1:{port}", retry=fast) as client:
            job = client.submit_job("seeds.jsonl", "out.jsonl")
            assert len(jobs.job_ids) == 2 and jobs.job_ids[0] == jobs.job_ids[1] == job.job_id
            assert len(job.job_id) == 12  # the server's own form
            jobs.job_ids.clear()
            assert client.submit_job("seeds.jsonl", "out.jsonl", job_id="mine").job_id == "mine"
            other = client.submit_job("seeds.jsonl", "other.jsonl")
            assert other.job_id not in ("mine", job.job_id)
    finally:
        server.stop(0)
