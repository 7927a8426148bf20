"""Shared fixtures: a real executor server in a subprocess, on loopback, port 0."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The test process forks itself in a few tests (the seccomp filter's); gRPC's fork handlers
# would restart an earlier test's channel machinery in such a child (a DNS resolver under the
# filter aborted on a denied socket). No product path forks without exec outside the sandbox,
# whose processes never import gRPC.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"
# vLLM puts its engine's ZMQ sockets in this directory, and a test that kills an engine leaves
# them there: a directory of this run's own, removed at its end.
_VLLM_RPC = tempfile.mkdtemp(prefix="acecoder-tests-vllm-rpc-")
os.environ["VLLM_RPC_BASE_PATH"] = _VLLM_RPC

# setuptools first: it replaces distutils with its own copy only if nothing loaded the standard
# library's before (some tests' imports do; vLLM's then imports setuptools and fails on it)
import setuptools  # noqa: E402, F401

from acecoder.serving import spawn_server  # noqa: E402

UID_BASE = 61000


@dataclass
class RunningServer:
    proc: subprocess.Popen[str]
    target: str
    metrics_port: int | None
    workers: int


def start_server(*extra: str, workers: int = 2, jail: str = "auto") -> RunningServer:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
           "--workers", str(workers), "--jail", jail, "--metrics-port", "0", *extra]
    proc, m = spawn_server(cmd, r"listening on (\S+) .*metrics on :(\d+)",
                           "the executor server")
    return RunningServer(proc, m.group(1), int(m.group(2)), workers)


def stop_server(server: RunningServer) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    return server.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    s = start_server()
    yield s
    stop_server(s)


@pytest.fixture(scope="session")
def client(server: RunningServer):  # type: ignore[no-untyped-def]
    from acecoder.clients import ExecutorClient

    with ExecutorClient(server.target, timeout=60) as c:
        yield c


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in out:
                out.add(child)
                todo.append(child)
    return out


def process_statuses(uids: set[int], root: int | None = None) -> Iterator[tuple[str, str]]:
    """(pid, /proc/<pid>/status) of each process whose real uid is one of `uids` (below the
    process `root`, if given)."""
    within = _descendants(root) if root is not None else None
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or (within is not None and int(pid) not in within):
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except OSError:
            continue
        m = re.search(r"^Uid:\s+(\d+)", status, re.M)
        if m and int(m.group(1)) in uids:
            yield pid, status


def sandbox_processes(workers: int = 2, root: int | None = None) -> list[str]:
    """Processes still running as a program uid of the first `workers` slots, but for the one
    spare per slot the worker spawns ahead of the next request (named acecoder-spare until it
    gets a job; it has run nothing). A leftover that names itself so makes two."""
    uids = {UID_BASE + 3 * k for k in range(workers)}  # programs run as base+3k
    out = []
    spares: set[str] = set()
    for pid, status in process_statuses(uids, root):
        m = re.search(r"^Uid:\s+(\d+)", status, re.M)
        # a zombie leader whose other threads run on is not gone
        zombie = re.search(r"^State:\s+Z", status, re.M) and \
            re.search(r"^Threads:\s+1$", status, re.M)
        if m and not zombie:
            name = re.search(r"^Name:\s+(.*)$", status, re.M)
            label = name.group(1) if name else "?"
            if label == "acecoder-spare" and m.group(1) not in spares:
                spares.add(m.group(1))
                continue
            out.append(f"{pid} uid={m.group(1)} {label}")
    return out


def assert_no_leftovers(workers: int = 2, within: float = 3.0, root: int | None = None) -> None:
    """No process of a program uid is left but the spares (of the server `root`, if given)."""
    end = time.monotonic() + within
    while True:
        left = sandbox_processes(workers, root)
        if not left or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"


# -- reward models ---------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Converted embedded models are cached inside the checkout (gitignored), never in $HOME.
os.environ.setdefault("ACECODER_CACHE", os.path.join(ROOT, ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail fast, not after retries


@pytest.fixture(scope="session")
def smol_dir() -> str:
    """The embedded SmolLM2-135M AceCode-RM checkpoint (converted once, then cached)."""
    from acecoder.models import embedded

    return str(embedded.ensure("smollm2-135m"))


@pytest.fixture(scope="session")
def smol_tokenizer_dir(smol_dir: str) -> str:
    return smol_dir


@pytest.fixture(scope="session")
def tiny_acecode_rm(tmp_path_factory: pytest.TempPathFactory, smol_tokenizer_dir: str):  # type: ignore[no-untyped-def]
    """(directory, reference model) of a tiny Qwen2 AceCode-RM in the released format."""
    from tests.rm_checkpoints import make_acecode_rm

    out = tmp_path_factory.mktemp("acecode-rm")
    return out, make_acecode_rm(out, smol_tokenizer_dir)


@pytest.fixture(scope="session")
def rm_target(tiny_acecode_rm) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """HOST:PORT of a real RM server (a subprocess) serving the tiny AceCode-RM."""
    init, _ = tiny_acecode_rm
    proc, m = spawn_server([sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0",
                            "--model", str(init)], r"listening on (\S+)", "the RM server")
    assert proc.stdout is not None and "ready" in proc.stdout.readline()
    yield m.group(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory, smol_tokenizer_dir: str) -> Path:
    """A tiny random Qwen2 causal LM with SmolLM2's tokenizer and chat template (a policy
    that trains in seconds). Heads of 64 dimensions: vLLM's CPU attention needs that."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny-policy")
    tok = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=4096, tie_word_embeddings=False,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def blocking_health() -> Any:
    """grpc_health's synchronous HealthServicer for a test's in-process server, its Watch
    served from the server's thread pool. In its default (callback) form it sends Watch's first
    answer while holding its lock; a client cancelling the stream at that moment makes the
    server's event thread wait for that lock in the close callback while the send waits for the
    event thread: a deadlock, and the pool thread is joined when the interpreter exits (pytest
    never ended). The product servers use the asyncio servicer, which has no such lock. (The
    setting is the class's: every synchronous servicer in the tests is made here.)"""
    from grpc_health.v1 import health

    return health.HealthServicer(experimental_non_blocking=False)


# -- the end of the run ------------------------------------------------------------------------

_EXIT_GRACE_S = 180.0
_status: dict[str, float] = {"exit": 0, "began": time.time()}


def pytest_sessionstart(session: pytest.Session) -> None:
    _status["began"] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status["exit"] = int(exitstatus)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long `make test` spent before the tests (installs), for CI logs that show only
    their end."""
    started = os.environ.get("ACECODER_MAKE_STARTED", "")
    if started.isdigit():
        before = _status["began"] - int(started)
        terminalreporter.write_line(f"make test: {before:.0f} s of set-up before the tests")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A run whose tests have ended must end too. If the interpreter is still exiting
    `_EXIT_GRACE_S` later (a thread or child process that something waits for at exit), say
    what still runs, then end with the tests' own status."""
    import threading

    shutil.rmtree(_VLLM_RPC, ignore_errors=True)

    def guard() -> None:
        time.sleep(_EXIT_GRACE_S)
        import faulthandler

        err = sys.__stderr__
        assert err is not None
        err.write(f"\npytest has not exited {_EXIT_GRACE_S:.0f} s after its tests ended; "
                  "its threads and child processes:\n")
        err.flush()
        faulthandler.dump_traceback(file=err, all_threads=True)
        for pid in sorted(_descendants(os.getpid())):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
                with open(f"/proc/{pid}/wchan") as f:
                    wchan = f.read()
            except OSError:
                continue
            err.write(f"  child {pid} (waiting in {wchan or '-'}): {cmd}\n")
        err.flush()
        os._exit(int(_status["exit"]))

    threading.Thread(target=guard, name="exit-guard", daemon=True).start()
