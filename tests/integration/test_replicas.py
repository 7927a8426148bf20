"""Replicas on loopback: three executor servers and two RM servers as real processes, each
kind behind one client target (an `ipv4:` list), in plaintext and with mutual TLS and bearer
tokens. Calls spread evenly (counted by each server's Prometheus endpoint); a replica killed
mid-run costs no request; a draining one gets no new calls; the trainer's rewards and
`acecoder rerank` reach every replica."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from acecoder.clients import ExecutorClient, Program, RetryPolicy
from acecoder.security import ClientSecurity
from tests.pki import CA

ROOT = Path(__file__).resolve().parents[2]
TRAINER = "trainer-token-0123456789abcdef"
RM = "rm-token-0123456789abcdef012345"
ADD = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
EXECUTOR = "acecoder.v1.Executor"


@dataclass
class Mode:
    """How servers listen and clients call: plaintext and open, or mutual TLS and tokens."""

    name: str
    server_args: tuple[str, ...] = ()
    client_env: dict[str, str] = field(default_factory=dict)
    """What a client process presents (ACECODER_TLS_*, ACECODER_TOKEN)."""
    server_env: dict[str, str] = field(default_factory=dict)
    """What the RM server presents to the executors."""

    @property
    def security(self) -> ClientSecurity:
        return ClientSecurity.from_env(self.client_env)


@dataclass
class Replica:
    proc: subprocess.Popen[str]
    target: str
    metrics: str


def list_target(replicas: list[Replica]) -> str:
    return "ipv4:" + ",".join(r.target for r in replicas)


@pytest.fixture(scope="module", params=["plain", pytest.param("tls", marks=pytest.mark.slow)])
def mode(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Mode:
    if request.param == "plain":
        return Mode("plain")
    out = tmp_path_factory.mktemp("pki")
    ca = CA(out, "acecoder-ca")
    server, client = ca.issue("replica", server=True), ca.issue("caller", server=False)
    tokens = out / "tokens"
    tokens.write_text(f"trainer {TRAINER}\nrm {RM}\n")
    identity = {"ACECODER_TLS_CA": str(ca.files.cert), "ACECODER_TLS_CERT": str(client.cert),
                "ACECODER_TLS_KEY": str(client.key)}
    return Mode("tls", ("--tls-cert", str(server.cert), "--tls-key", str(server.key),
                        "--tls-client-ca", str(ca.files.cert), "--auth-tokens", str(tokens)),
                {**identity, "ACECODER_TOKEN": TRAINER}, {**identity, "ACECODER_TOKEN": RM})


def spawn(cmds: list[list[str]], env: dict[str, str]) -> list[Replica]:
    """Start every server at once; each once it has said where it listens."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
             for c in cmds]
    out = []
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on (\S+) .*metrics on :(\d+)", line)
        if not m:
            for p in procs:
                p.kill()
            raise RuntimeError(f"a server did not start: {line!r}")
        out.append(Replica(proc, m.group(1), f"http://127.0.0.1:{m.group(2)}/metrics"))
    return out


def start_executors(mode: Mode, n: int = 3) -> list[Replica]:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
           "--workers", "1", "--metrics-port", "0", *mode.server_args]
    return spawn([cmd] * n, {})


def start_rms(mode: Mode, model: Path, executor_target: str, n: int = 2) -> list[Replica]:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0", "--model",
           str(model), "--metrics-port", "0", "--executor", executor_target, *mode.server_args]
    rms = spawn([cmd] * n, mode.server_env)
    for rm in rms:
        assert rm.proc.stdout is not None
        line = rm.proc.stdout.readline()
        if "ready" not in line:
            stop(rms)
            raise RuntimeError(f"an RM server did not get ready: {line!r}")
    return rms


def stop(replicas: list[Replica]) -> None:
    for r in replicas:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
    for r in replicas:
        r.proc.wait(timeout=60)


@dataclass
class Cluster:
    mode: Mode
    executors: list[Replica]
    rms: list[Replica]

    @property
    def executor_target(self) -> str:
        return list_target(self.executors)

    @property
    def rm_target(self) -> str:
        return list_target(self.rms)


@pytest.fixture(scope="module")
def executors(mode: Mode) -> Iterator[list[Replica]]:
    replicas = start_executors(mode)
    yield replicas
    stop(replicas)


@pytest.fixture(scope="module")
def cluster(mode: Mode, executors: list[Replica], tiny_acecode_rm) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    """The executors, and two RM servers whose `--executor` is the list of all three."""
    rms = start_rms(mode, tiny_acecode_rm[0], list_target(executors))
    yield Cluster(mode, executors, rms)
    stop(rms)


def served(replica: Replica, method: str) -> int:
    """Calls of `method` the replica has finished, whatever their status (its metrics)."""
    text = httpx.get(replica.metrics, timeout=10).text
    found = re.findall(r'^acecoder_(?:executor|rm)_requests_total\{(?=[^}]*method="'
                       + method + r'")[^}]*\} (\S+)', text, re.M)
    return int(sum(float(n) for n in found))


def counts(replicas: list[Replica], method: str) -> list[int]:
    return [served(r, method) for r in replicas]


def since(before: list[int], replicas: list[Replica], method: str) -> list[int]:
    return [now - then for now, then in zip(counts(replicas, method), before, strict=True)]


@dataclass(frozen=True)
class CountingRetry(RetryPolicy):
    """The clients' retry policy, noting each retry it is asked to wait for."""

    waits: list[int] = field(default_factory=list)

    def delay(self, attempt: int) -> float:
        self.waits.append(attempt)
        return super().delay(attempt)


def run_all(client: ExecutorClient, n: int, *, threads: int, program: str = ADD,
            tick: threading.Event | None = None, at: int = 0) -> list[float]:
    """`n` calls from `threads` threads; `tick` is set once `at` have come back."""
    done = [0]
    lock = threading.Lock()

    def one(i: int) -> float:
        rate = client.execute(program, TESTS, request_id=f"r{i}").pass_rate
        with lock:
            done[0] += 1
            if tick is not None and done[0] == at:
                tick.set()
        return rate

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def test_calls_spread_evenly_over_the_replicas(mode: Mode, executors: list[Replica]) -> None:
    before = counts(executors, "Execute")
    with ExecutorClient(list_target(executors), security=mode.security) as client:
        rates = run_all(client, 300, threads=6)
    assert rates == [1.0] * 300
    spread = since(before, executors, "Execute")
    assert sum(spread) == 300, spread  # not one retry was needed
    assert all(75 <= n <= 125 for n in spread), spread  # within 25% of 100 each


@pytest.mark.slow
def test_a_replica_killed_mid_run_costs_no_request(mode: Mode) -> None:
    executors = start_executors(mode)
    killed = executors[0]
    retry = CountingRetry()
    tick = threading.Event()
    family: list[psutil.Process] = []
    served_before: list[int] = []

    def kill_when_ticked() -> None:
        tick.wait(60)
        served_before.append(served(killed, "Execute"))
        family.extend(psutil.Process(killed.proc.pid).children(recursive=True))
        killed.proc.kill()

    try:
        before = counts(executors, "Execute")
        with ExecutorClient(list_target(executors), security=mode.security, retry=retry,
                            timeout=30) as client:
            slow = "import time\ntime.sleep(0.02)\n" + ADD  # calls in flight on every replica
            killer = threading.Thread(target=kill_when_ticked)
            killer.start()
            rates = run_all(client, 240, threads=9, program=slow, tick=tick, at=60)
            killer.join()
        assert rates == [1.0] * 240  # every request answered, none lost
        assert killed.proc.wait(timeout=10) == -signal.SIGKILL
        assert served_before[0] > before[0]  # it was taking its share until then
        assert retry.waits, "the kill caught no call in flight"
        survivors = since(before[1:], executors[1:], "Execute")
        assert sum(survivors) >= 150 and min(survivors) > 0, survivors  # all after the kill
    finally:
        stop(executors[1:])
        _, alive = psutil.wait_procs(family, timeout=10)  # its workers follow it
        for p in alive:
            p.kill()


def health_of(target: str, security: ClientSecurity) -> int:
    with security.channel(target, []) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=EXECUTOR), timeout=5).status


@pytest.mark.slow
def test_a_draining_replica_gets_no_new_calls(mode: Mode) -> None:
    executors = start_executors(mode)
    draining = executors[0]
    security = mode.security
    try:
        with ExecutorClient(list_target(executors), security=security) as client, \
                ExecutorClient(draining.target, security=security) as direct, \
                ThreadPoolExecutor(1) as background:
            assert run_all(client, 30, threads=3) == [1.0] * 30
            assert min(counts(executors, "Execute")) > 0  # all three in rotation
            # a long call in flight keeps it draining (a batch: it is not counted as Execute)
            wait = "import time\ndef add(a, b):\n    time.sleep(5)\n    return a + b\n"
            long = background.submit(lambda: list(direct.execute_batch(
                [Program(wait, TESTS[:1], timeout=10)], deadline=30)))
            time.sleep(0.5)
            draining.proc.send_signal(signal.SIGTERM)
            end = time.monotonic() + 5
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            while health_of(draining.target, security) != not_serving:
                assert time.monotonic() < end, "health never turned NOT_SERVING"
                time.sleep(0.02)
            time.sleep(0.2)  # the client's own health watch hears it too
            assert draining.proc.poll() is None  # still draining: the long call is running
            before = counts(executors, "Execute")
            assert run_all(client, 60, threads=3) == [1.0] * 60
            after = since(before, executors, "Execute")
            assert draining.proc.poll() is None and not long.done()  # the whole time
            assert after[0] == 0 and sum(after[1:]) == 60, after
            (result,) = long.result(timeout=30)
            assert result.pass_rate == 1.0  # the drain let it finish
        assert draining.proc.wait(timeout=30) == 0
    finally:
        stop(executors)


QUESTION = "Write a function add(a, b) that returns the sum of a and b."
WRONG = "def add(a, b):\n    return a - b\n"


@pytest.mark.slow  # the RM servers take long to start
def test_the_trainers_rewards_reach_every_replica(cluster: Cluster,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from acecoder.clients.rewards import RewardScorer, RewardSpec, Sample

    for name, value in cluster.mode.client_env.items():
        monkeypatch.setenv(name, value)
    executed = counts(cluster.executors, "ExecuteBatchChunked")
    scored = counts(cluster.rms, "Score")
    scorer = RewardScorer(RewardSpec(kind="mix", executor=cluster.executor_target,
                                     rm=cluster.rm_target, per_call=1))
    time.sleep(0.5)  # a trainer makes its scorer, then generates: the channels connect meanwhile
    try:
        rewards = scorer.submit([Sample(QUESTION, r, tuple(TESTS))
                                 for r in [ADD, WRONG] * 6]).result(timeout=120)
    finally:
        scorer.close()
    assert [r.pass_rate for r in rewards] == [1.0, 0.5] * 6
    assert all(r.value is not None and r.rm_score is not None for r in rewards)
    by_executor = since(executed, cluster.executors, "ExecuteBatchChunked")
    by_rm = since(scored, cluster.rms, "Score")
    assert sum(by_executor) == sum(by_rm) == 12  # one call per sample (per_call=1)
    assert min(by_executor) > 0 and min(by_rm) > 0, (by_executor, by_rm)


@pytest.mark.slow
def test_rerank_reaches_every_replica(cluster: Cluster, tmp_path: Path) -> None:
    """`acecoder rerank --server` to both RM servers, which run the tests on all three
    executors (their own `--executor` is the list)."""
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(
        json.dumps({"id": f"q{i}", "question": QUESTION, "candidates": [WRONG, ADD],
                    "tests": TESTS}) + "\n" for i in range(12)))
    reranked = counts(cluster.rms, "Rerank")
    executed = counts(cluster.executors, "ExecuteBatchChunked")
    done = subprocess.run(
        [sys.executable, "-m", "acecoder.cli", "rerank", "--input", str(questions), "--output",
         str(tmp_path / "ranked.jsonl"), "--server", cluster.rm_target, "--concurrency", "2",
         "--quiet"], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, **cluster.mode.client_env})
    assert done.returncode == 0, done.stderr[-3000:]
    ranked = [json.loads(line) for line in (tmp_path / "ranked.jsonl").read_text().splitlines()]
    assert len(ranked) == 12 and all(r["best"] == 1 for r in ranked)
    by_rm = since(reranked, cluster.rms, "Rerank")
    by_executor = since(executed, cluster.executors, "ExecuteBatchChunked")
    assert sum(by_rm) == 12 and min(by_rm) > 0, by_rm
    assert sum(by_executor) == 12 and min(by_executor) > 0, by_executor


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["tls"], indirect=True)  # minutes: once, with everything on
def test_an_rl_run_reaches_every_replica(cluster: Cluster, tmp_path: Path) -> None:
    """`acecoder train rl` (one process, two steps of the tiny CPU preset) with mix rewards
    from the lists of executors and RM servers, over mutual TLS with a token."""
    executed = counts(cluster.executors, "ExecuteBatchChunked")
    scored = counts(cluster.rms, "Score")
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "acecoder.cli", "train", "rl", "--preset",
         "trainer/configs/rl_cpu_tiny.json", "--output", str(out), "--steps", "2",
         "--max-new-tokens", "16", "--reward", "mix", "--executor", cluster.executor_target,
         "--rm", cluster.rm_target, "--quiet"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, **cluster.mode.client_env, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["reward/dropped"] == 0 for r in rows)
    by_executor = since(executed, cluster.executors, "ExecuteBatchChunked")
    by_rm = since(scored, cluster.rms, "Score")
    assert min(by_executor) > 0 and min(by_rm) > 0, (by_executor, by_rm)
