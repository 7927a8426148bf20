"""The executor's own records: requests, verdicts and results (no grpc, no proto)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(str, enum.Enum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    MEMORY = "MEMORY"
    CRASHED = "CRASHED"
    SKIPPED = "SKIPPED"


class ProgramStatus(str, enum.Enum):
    OK = "OK"
    SYNTAX_ERROR = "SYNTAX_ERROR"
    LOAD_ERROR = "LOAD_ERROR"
    EXITED_EARLY = "EXITED_EARLY"
    LOAD_TIMEOUT = "LOAD_TIMEOUT"
    LOAD_MEMORY = "LOAD_MEMORY"
    LOAD_CRASHED = "LOAD_CRASHED"
    SETUP_ERROR = "SETUP_ERROR"


class Flag(str, enum.Enum):
    """Attempts to game the tests, seen and defeated (a flag never changes a verdict)."""
    EXITED_EARLY = "EXITED_EARLY"
    FORGED_OUTPUT = "FORGED_OUTPUT"
    OVERRIDDEN_EQUALITY = "OVERRIDDEN_EQUALITY"


@dataclass(frozen=True, kw_only=True)
class ExecutionRequest:
    """One program and its tests, validated (see `service.validate`)."""

    program: str
    tests: tuple[str, ...]
    setup: str = ""
    timeout: float
    memory_mb: int
    stop_on_first_failure: bool = False
    request_id: str = ""


@dataclass(frozen=True, kw_only=True)
class TestResult:
    verdict: Verdict
    duration: float = 0.0
    error_type: str = ""
    error_message: str = ""


@dataclass(frozen=True, kw_only=True)
class ExecutionResult:
    request_id: str
    status: ProgramStatus
    tests: tuple[TestResult, ...]
    status_detail: str = ""
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration: float = 0.0
    jail: str = ""
    index: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    """`Flag` values: what the program tried (see `Flag`)."""

    @property
    def verdicts(self) -> list[Verdict]:
        return [t.verdict for t in self.tests]

    @property
    def passed(self) -> int:
        return sum(t.verdict is Verdict.PASSED for t in self.tests)

    @property
    def pass_rate(self) -> float:
        """AceCoder's reward: tests passed / tests given."""
        return self.passed / len(self.tests) if self.tests else 0.0

    @property
    def all_passed(self) -> bool:
        """The binary reward: 1.0 only when every test passes."""
        return bool(self.tests) and self.passed == len(self.tests)
