"""The three services as child processes: `acecoder serve all`, and the demo.

Each child is `acecoder serve NAME` on its own port; the group starts them in dependency order
(executor, then the RM server and the synthesis service, which both use it), forwards their
stdout with the service's name in front, and stops them in reverse order with SIGTERM (so
each drains), killing what does not stop within the grace. After a stop, no process that a
child started is left: stragglers are listed in `leftovers` and killed.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from acecoder.serving import spawn_server


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[str]
    target: str
    said: str
    """Its first line (what it listens on)."""
    ready: threading.Event = field(default_factory=threading.Event)
    ready_line: str = ""


class ServiceGroup:
    def __init__(self, *, echo: bool = True) -> None:
        self.children: list[Child] = []
        self.echo = echo
        self.leftovers: list[str] = []
        self._say = threading.Lock()

    def say(self, text: str) -> None:
        """One whole line to stdout (the children's forwarded lines never cut into it)."""
        with self._say:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def start(self, service: str, *args: str, wait_ready: bool = False) -> Child:
        """Start `acecoder serve SERVICE ARGS` and return once it listens. `wait_ready`: the
        service prints a second line when it is ready (the RM server, once its model is
        loaded); `await_ready` waits for it."""
        cmd = [sys.executable, "-m", "acecoder.cli", "serve", service, *args]
        proc, m = spawn_server(cmd, r"listening on (\S+)", f"the {service} server")
        child = Child(service, proc, m.group(1), m.group(0))
        if not wait_ready:
            child.ready.set()
        self.children.append(child)
        threading.Thread(target=self._forward, args=(child,), daemon=True,
                         name=f"{service}-stdout").start()
        return child

    def _forward(self, child: Child) -> None:
        assert child.proc.stdout is not None
        for line in child.proc.stdout:
            if self.echo:  # before `ready`: whoever waits for it prints after this line
                self.say(f"[{child.name}] {line.rstrip()}")
            if not child.ready.is_set():
                child.ready_line = line.strip()
                child.ready.set()
        child.ready.set()  # it exited: whoever waits must not wait forever

    def await_ready(self, child: Child, timeout: float = 900.0) -> str:
        """The child's ready line; RuntimeError if it exited or said something else."""
        if not child.ready.wait(timeout):
            raise RuntimeError(f"the {child.name} server was not ready within {timeout:.0f} s")
        if "ready" not in child.ready_line:
            raise RuntimeError(f"the {child.name} server did not get ready (said: "
                               f"{child.ready_line!r}, exit code {child.proc.poll()})")
        return child.ready_line

    def exited(self) -> Child | None:
        """A child that has exited, if any."""
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop(self, grace: float = 60.0) -> dict[str, int]:
        """SIGTERM each child, last started first; exit codes by name (-9: it was killed)."""
        family = self._descendants()
        codes: dict[str, int] = {}
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
            try:
                codes[child.name] = child.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
                codes[child.name] = -9
        self.leftovers = _reap(family)
        return codes

    def _descendants(self) -> list[psutil.Process]:
        out = []
        for child in self.children:
            with contextlib.suppress(psutil.Error):
                out += psutil.Process(child.proc.pid).children(recursive=True)
        return out

    def __enter__(self) -> ServiceGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        if any(c.proc.poll() is None for c in self.children):
            self.stop()


def _reap(processes: list[psutil.Process], within: float = 5.0) -> list[str]:
    """Descriptions of the processes still alive `within` seconds from now (then killed)."""
    end = time.monotonic() + within
    alive = processes
    while alive and time.monotonic() < end:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    left = []
    for p in alive:
        with contextlib.suppress(psutil.Error):
            left.append(f"{p.pid} {p.name()}")
            p.kill()
    return left


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_executor(workers: int, jail: str) -> tuple[subprocess.Popen[str], str]:
    """`acecoder serve executor` on a free loopback port, once its health says SERVING:
    (process, target). For commands that need an executor only for their own duration."""
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
           "--workers", str(workers), "--jail", jail, "--max-queue", "4096"]
    proc, m = spawn_server(cmd, r"listening on (\S+)", "the executor server")
    target = m.group(1)
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError("the executor server is not serving")
    return proc, target
