"""`acecoder serve all`: the three services from one command, real processes on loopback,
each reachable and working with the others; SIGTERM stops them all cleanly and leaves no
process; one service dying takes the group down with a non-zero status."""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fake_openai import FakeOpenAI

QUESTION = "Write a function add(a, b) that returns the sum of a and b."
GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"

pytestmark = pytest.mark.slow  # each test starts all three services (7-9 s)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI().start()
    yield f
    f.stop()


def start_all(fake: FakeOpenAI, rm_model: Path, data: Path, *extra: str
              ) -> tuple[subprocess.Popen[str], dict[str, str], queue.Queue[str | None]]:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "all", "--executor-port", "0",
           "--rm-port", "0", "--synth-port", "0", "--workers", "1", "--rm-model", str(rm_model),
           "--llm", fake.url, "--llm-model", "fake", "--state-dir", str(data / "state"),
           "--data-dir", str(data), "--grace", "5", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    said: list[str] = []
    end = time.monotonic() + 240
    try:
        while not said or said[-1] != "acecoder all ready":
            line = lines.get(timeout=max(0.1, end - time.monotonic()))
            if line is None:
                break
            said.append(line)
    except queue.Empty:
        pass
    if said[-1:] != ["acecoder all ready"]:
        kill_tree(proc)
        raise AssertionError(f"serve all did not get ready; it said: {said}")
    listening = next((s for s in said if s.startswith("acecoder all listening")), "")
    targets = dict(re.findall(r"(\w+) on (\S+?)(?:,|$)", listening))
    assert set(targets) == {"executor", "rm", "synth"}, said
    return proc, targets, lines


def finish(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> str:
    """Wait for serve all to exit (killing its tree if it does not) and return what it said
    after it got ready."""
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    out = []
    while (line := lines.get(timeout=30)) is not None:
        out.append(line)
    return "\n".join(out)


def kill_tree(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                p.kill()
    proc.kill()
    proc.wait(timeout=30)


def service_of(p: psutil.Process) -> str:
    cmd = p.cmdline()
    return cmd[cmd.index("serve") + 1] if "serve" in cmd else ""


def family(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def gone(processes: list[psutil.Process], within: float = 10.0) -> list[int]:
    end = time.monotonic() + within
    alive = processes
    while time.monotonic() < end:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            break
        time.sleep(0.1)
    return [p.pid for p in alive]


def test_serve_all_runs_the_three_services_and_stops_them_cleanly(
        fake: FakeOpenAI, tiny_acecode_rm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With tokens: each service asks for one, and the RM and synthesis services reach the
    executor with theirs."""
    from acecoder.clients import ClientSecurity, ExecutorClient, RewardClient, SynthesisClient
    from acecoder.clients.base import RetryPolicy

    tokens = tmp_path / "tokens"
    tokens.write_text(f"services {'s' * 20}\nme {'m' * 20}\n")
    proc, targets, lines = start_all(fake, tiny_acecode_rm[0], tmp_path, "--auth-tokens",
                                     str(tokens))
    me = ClientSecurity(token="m" * 20)
    try:
        for name, service in (("executor", "acecoder.v1.Executor"),
                              ("rm", "acecoder.v1.RewardModel"),
                              ("synth", "acecoder.v1.Synthesis")):
            with grpc.insecure_channel(targets[name]) as ch:
                status = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING, name
        with ExecutorClient(targets["executor"], security=me) as ex:
            assert ex.execute(GOOD, ["assert add(1, 2) == 3"]).pass_rate == 1.0
        for name, client in (("executor", ExecutorClient), ("rm", RewardClient),
                             ("synth", SynthesisClient)):
            with client(targets[name], retry=RetryPolicy(attempts=1),
                        security=ClientSecurity()) as anonymous, \
                    pytest.raises(grpc.RpcError) as err:
                anonymous.info() if name == "executor" else (
                    anonymous.model_info() if name == "rm" else anonymous.list_jobs())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        with RewardClient(targets["rm"], security=me) as rm:  # it runs tests on the executor
            ranked = rm.rerank(QUESTION, [BAD, GOOD], tests=["assert add(1, 2) == 3"])
            assert ranked.best.index == 1 and ranked.best.pass_rate == 1.0
        with SynthesisClient(targets["synth"], security=me) as synth:  # and so does synthesis
            events = list(synth.synthesize("q", question=QUESTION))
            assert events[-1].outcome.tests_kept >= 1
        kids = family(proc)
        assert len(kids) >= 3
        proc.send_signal(signal.SIGTERM)
    finally:
        out = finish(proc, lines)
    assert proc.returncode == 0, out
    assert "acecoder all stopped: synth exit 0, rm exit 0, executor exit 0" in out
    assert "stragglers" not in out
    assert gone(kids) == []


def test_a_service_that_dies_takes_the_group_down(fake: FakeOpenAI, tiny_acecode_rm,
                                                  tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, _, lines = start_all(fake, tiny_acecode_rm[0], tmp_path)
    try:
        kids = family(proc)
        rm = next(p for p in psutil.Process(proc.pid).children() if service_of(p) == "rm")
        rm.kill()
    finally:
        out = finish(proc, lines)
    assert proc.returncode == 1
    assert re.search(r"rm exit -9", out), out
    assert gone(kids) == []
