"""Executor configuration: one frozen dataclass, checked once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .jail import JAILS


@dataclass(frozen=True, kw_only=True)
class ExecutorConfig:
    workers: int = max(1, os.cpu_count() or 1)
    """Jailed worker processes; each runs one program at a time (about one core each)."""
    max_queue: int = 256
    """Requests that may wait for a worker; one more is refused with RESOURCE_EXHAUSTED."""
    jail: str = "auto"
    """'auto' (firejail, else bubblewrap, else namespaces) or one of those names."""
    default_timeout: float = 3.0
    """Per-test time limit, seconds, when a request sets none."""
    max_timeout: float = 60.0
    """Largest per-test time limit a request may ask for."""
    load_timeout: float = 10.0
    """Most time allowed for the setup code and the program's top level to run (a request gets
    its per-test limit plus 2 s, up to this)."""
    default_memory_mb: int = 1024
    """Address-space limit of a program, MiB, when a request sets none."""
    max_memory_mb: int = 8192
    """Largest address-space limit a request may ask for."""
    max_program_bytes: int = 1 << 20
    """Largest program (and setup) accepted, bytes of UTF-8."""
    max_tests: int = 1000
    """Most tests accepted in one request."""
    max_test_bytes: int = 1 << 20
    """Largest single test, bytes."""
    max_batch: int = 10_000
    """Most programs in one ExecuteBatch."""
    output_bytes: int = 64 * 1024
    """Captured stdout (and, separately, stderr) kept per program; the rest is dropped."""
    max_stdio_bytes: int = 16 << 20
    """Largest input, and largest expected output, of one stdio test."""
    max_output_limit: int = 64 << 20
    """Largest `output_limit` a stdio request may ask for (what one test's run may write)."""
    compile_timeout: float = 10.0
    """Compiled languages: the compiler's wall-clock limit, seconds, when a request sets none."""
    max_compile_timeout: float = 60.0
    """Largest compiler time limit a request may ask for."""
    compile_memory_mb: int = 2048
    """Compiled languages: the compiler's memory limit, MiB (a template bomb ends there)."""
    file_bytes: int = 16 << 20
    """Largest file a program may write (RLIMIT_FSIZE)."""
    tmp_bytes: int = 256 << 20
    """All files a program may write together: the size of the tmpfs each request gets as its
    own directory (detached whole when the request ends)."""
    open_files: int = 64
    """Open file descriptors per program process (RLIMIT_NOFILE)."""
    processes: int = 32
    """Processes and threads per program (RLIMIT_NPROC of its own uid)."""
    uid_base: int = 61000
    """Programs of worker slot k run as uid base+3k, their tests as base+3k+1, the slot's judge
    as base+3k+2. base+3n (n workers) is the real uid a worker takes on for an instant to
    kill every process of a request's uids at once; nothing runs as it."""
    plain_judge: bool = True
    """Run suites of plain checks (`assert f(1, 2) == 3`, HumanEval's `check(candidate)`) in
    each slot's judge, a test process that serves many requests, instead of a fresh test
    process per request (see "How a program runs" in the README)."""
    recycle_after: int = 2000
    """Replace a worker after this many programs (bounds any slow leak)."""
    pin_workers: bool = True
    """Pin worker slot k (and its children) to core k mod ncores: cheaper hand-offs."""
    seccomp: bool = True
    """Install the seccomp filter in program and test processes."""
    hide_paths: tuple[str, ...] = ()
    """Extra directories to hide from programs (the checkout, /root, /home, /run always are)."""
    preimport: tuple[str, ...] = ()
    """Extra modules every worker imports once, so programs get them for free."""

    def __post_init__(self) -> None:
        problems = []
        if self.workers < 1:
            problems.append(f"workers must be >= 1, got {self.workers}")
        if self.max_queue < 0:
            problems.append(f"max_queue must be >= 0, got {self.max_queue}")
        if self.jail != "auto" and self.jail not in JAILS:
            problems.append(f"jail must be 'auto' or one of {JAILS}, got {self.jail!r}")
        for name in ("default_timeout", "max_timeout", "load_timeout", "compile_timeout",
                     "max_compile_timeout"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.compile_timeout > self.max_compile_timeout:
            problems.append(f"compile_timeout {self.compile_timeout} exceeds "
                            f"max_compile_timeout {self.max_compile_timeout}")
        if self.compile_memory_mb < 64:
            problems.append(f"compile_memory_mb must be >= 64, got {self.compile_memory_mb}")
        if self.default_timeout > self.max_timeout:
            problems.append(f"default_timeout {self.default_timeout} exceeds max_timeout "
                            f"{self.max_timeout}")
        if not 16 <= self.default_memory_mb <= self.max_memory_mb:
            problems.append(
                f"default_memory_mb must be in [16, max_memory_mb={self.max_memory_mb}], "
                f"got {self.default_memory_mb}")
        for name in ("max_program_bytes", "max_tests", "max_test_bytes", "max_batch",
                     "output_bytes", "file_bytes", "tmp_bytes", "open_files", "processes",
                     "max_stdio_bytes", "max_output_limit",
                     "recycle_after"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1000 <= self.uid_base <= 2**31 - 3 * (self.workers + 1):
            problems.append(
                f"uid_base must be an unprivileged uid range start, got {self.uid_base}")
        if problems:
            raise ValueError("invalid executor config: " + "; ".join(problems))
