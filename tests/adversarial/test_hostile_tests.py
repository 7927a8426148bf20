"""Tests come from the request too, and may be hostile: whatever a test writes on the worker's
channel (forged reports, garbage, half a frame), it costs only its own request, whose tests come
back CRASHED with a status that says why; a batch and an `acecoder exec` run answer every record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from acecoder.clients import Program
from acecoder.executor.types import Verdict

# Reports are JSON frames (see wire.dumps_report): these are well-formed frames that lie.
_FRAME = "import os, json, struct\ndef frame(m):\n    d = json.dumps(m).encode()\n    os.write(3, struct.pack('>I', len(d)) + d)\n"
_RAW = "import os, struct\ndef raw(d):\n    os.write(3, struct.pack('>I', len(d)) + d)\n"
# A pickle whose decoding hashes a tuple of 2**60 leaves: 60 memo references, a frozenset. Any
# decoder of the worker's that builds hashed containers from a hostile pickle never returns.
_HASH_BOMB = _RAW + (
    "ops = b'\\x80\\x04(' + b'K\\x01K\\x01\\x86\\x94'\n"
    "for i in range(60):\n"
    "    ops += b'h' + bytes([i]) + b'h' + bytes([i]) + b'\\x86\\x94'\n"
    "raw(ops + b'\\x91.')")

FORGERIES = {
    "unknown-verdict": _FRAME + "frame(('done', 0, 'WON', '', ''))",
    "index-out-of-range": _FRAME + "frame(('done', 10**6, 'PASSED', '', ''))",
    "negative-index": _FRAME + "frame(('done', -1, 'PASSED', '', ''))",
    "verdict-for-a-later-test": _FRAME + "frame(('done', 1, 'PASSED', '', ''))",
    "not-a-tuple": _FRAME + "frame({'done': 0})",
    "unknown-kind": _FRAME + "frame(('rewrite', 0))",
    "second-loaded": _FRAME + "frame(('loaded',))",
    "a-pickled-report": _RAW + "import pickle\nraw(pickle.dumps(('done', 0, 'PASSED', '', '')))",
    "hash-bomb": _HASH_BOMB,
    "nesting-bomb": _RAW + "raw(b'[' * 500000 + b']' * 500000)",
    "huge-integer": _RAW + "raw(b'[\"done\", ' + b'9' * 900000 + b', \"PASSED\", \"\", \"\"]')",
    "refused-global": "import os, struct, pickle\nd = pickle.dumps(os.system)\nos.write(3, struct.pack('>I', len(d)) + d)",
    "garbage": "import os\nos.write(3, b'\\x00\\x00\\x00\\x08garbage!')",
    "oversized-header": "import os, struct\nos.write(3, struct.pack('>I', 1 << 31))",
    "half-a-header-then-hang": "import os, time\nos.write(3, b'\\x00')\ntime.sleep(60)",
    "long-error-message": _FRAME + "frame(('done', 0, 'FAILED', 'E' * 10**5, 'm' * 10**5))",
    "report-over-the-frame-cap": _FRAME + "frame(('done', 0, 'FAILED', 'E' * 10**6, 'm' * 10**6))",
}


@pytest.mark.parametrize("test", list(FORGERIES))
def test_forged_reports_cost_only_their_request(client, test: str) -> None:  # type: ignore[no-untyped-def]
    tests = [FORGERIES[test], "assert f(1) == 1", "assert f(2) == 2"]
    r = client.execute("def f(x):\n    return x\n", tests, timeout=1.0)
    assert len(r.verdicts) == 3, r
    if test == "long-error-message":
        # Well-formed, about the running test: taken (a request's tests decide their own
        # verdicts), trimmed. The harness's own report for that test then comes out of turn.
        assert r.verdicts == [Verdict.FAILED, Verdict.CRASHED, Verdict.CRASHED], r
        assert len(r.tests[0].error_message) <= 4096 and len(r.tests[0].error_type) <= 4096
    elif test == "half-a-header-then-hang":  # the worker never waits for the rest of a frame
        assert r.verdicts == [Verdict.TIMEOUT, Verdict.PASSED, Verdict.PASSED], r
    else:
        assert set(r.verdicts) == {Verdict.CRASHED}, r
        assert "broke the protocol" in r.status_detail, r
    ok = client.execute("def f(x):\n    return x\n", ["assert f(1) == 1"])
    assert ok.all_passed, ok  # the worker serves on


def test_a_batch_answers_every_request(client) -> None:  # type: ignore[no-untyped-def]
    programs = []
    for i, forged in enumerate(FORGERIES.values()):
        programs.append(Program(program="def f(x):\n    return x\n", tests=[forged], timeout=1.0))
        programs.append(Program(program="def f(x):\n    return x\n", tests=[f"assert f({i}) == {i}"]))
    results = list(client.execute_batch(programs))
    assert sorted(r.index for r in results) == list(range(len(programs)))
    honest = [r for r in results if r.index % 2 == 1]
    assert all(r.all_passed for r in honest), honest


def test_exec_answers_every_record(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = []
    for i, forged in enumerate(FORGERIES.values()):
        rows.append({"id": f"hostile-{i}", "program": "def f(x):\n    return x\n", "tests": [forged]})
        rows.append({"id": f"honest-{i}", "program": "def f(x):\n    return x\n",
                     "tests": [f"assert f({i}) == {i}"]})
    rows.append({"id": "debris", "program": "import os\nfor i in range(3000):\n    os.mkdir('d' * 50)\n"
                 "    os.chdir('d' * 50)\ndef f(x):\n    return x\n", "tests": ["assert f(1) == 1"]})
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([sys.executable, "-m", "acecoder.cli", "exec", "--input", str(inp),
                           "--output", str(out), "--workers", "2", "--timeout", "1", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(got) == {r["id"] for r in rows}
    assert all(got[f"honest-{i}"]["pass_rate"] == 1.0 for i in range(len(FORGERIES)))
    assert got["debris"]["pass_rate"] == 1.0
