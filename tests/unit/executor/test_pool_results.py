"""The pool checks what a worker reports before it becomes a result (WorkerPool._result), and
answers a request whose worker failed with CRASHED tests that say why (never an exception)."""

from __future__ import annotations

import pytest

from acecoder.executor.config import ExecutorConfig
from acecoder.executor.pool import WorkerPool
from acecoder.executor.service import validate
from acecoder.executor.types import Verdict

CONFIG = ExecutorConfig(workers=1)
REQ = validate(CONFIG, program="def f(x):\n    return x\n", tests=["assert f(1) == 1", "assert 1"])


def raw(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "status": "OK", "detail": "", "verdicts": [["PASSED", 0.1, "", ""], ["FAILED", 0.1, "A", "m"]],
        "stdout": b"", "stderr": b"", "stdout_truncated": False, "stderr_truncated": False,
        "duration": 0.2, "flags": [],
    }
    base.update(over)
    return base


def test_a_wellformed_report_becomes_the_result() -> None:
    r = WorkerPool(CONFIG)._result(REQ, raw())
    assert r.verdicts == [Verdict.PASSED, Verdict.FAILED] and r.tests[1].error_type == "A"


@pytest.mark.parametrize("bad", [
    {"verdicts": [["PASSED", 0.1, "", ""]]},                             # one verdict short
    {"verdicts": [["WON", 0, "", ""], ["PASSED", 0, "", ""]]},           # unknown verdict
    {"status": "GREAT"},
    {"verdicts": [["PASSED"], ["PASSED", 0, "", ""]]},
    {"verdicts": None},
])
def test_a_malformed_report_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError, IndexError, KeyError)):
        WorkerPool(CONFIG)._result(REQ, raw(**bad))


def test_a_lost_request_is_answered_not_raised() -> None:
    r = WorkerPool(CONFIG)._lost_result(REQ, "the sandbox failed: boom")
    assert r.verdicts == [Verdict.CRASHED, Verdict.CRASHED]
    assert r.status_detail == "the sandbox failed: boom" == r.tests[0].error_message


def test_a_request_s_capture_size_replaces_the_server_s() -> None:
    pool = WorkerPool(CONFIG)
    assert pool.job(REQ)["output_bytes"] == CONFIG.output_bytes
    big = validate(CONFIG, program="print(1)", tests=[], stdio=[("", "")], capture_bytes=1 << 24)
    assert pool.job(big)["output_bytes"] == 1 << 24
