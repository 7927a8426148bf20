"""`acecoder exec` (a contract other tools use) and the command's help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

VERDICTS = {"PASSED", "FAILED", "ERROR", "TIMEOUT", "MEMORY", "CRASHED", "SKIPPED"}


def acecoder(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acecoder.cli", *args], capture_output=True,
                          text=True, timeout=300, check=check)


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


ROWS = [
    {"id": "good", "program": "def f(x):\n    return x + 1\n", "tests": ["assert f(1) == 2", "assert f(2) == 3"]},
    {"id": "half", "program": "def f(x):\n    return 2\n", "tests": ["assert f(1) == 2", "assert f(2) == 3"]},
    {"id": "loop", "program": "def f(x):\n    while True: pass\n", "tests": ["assert f(1) == 2"]},
    {"id": "syntax", "program": "def f(:\n", "tests": ["assert f(1) == 2"]},
    {"id": "no-tests", "program": "x = 1\n", "tests": []},
]


def test_exec_contract_and_resume(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, ROWS[:3])
    proc = acecoder("exec", "--input", str(inp), "--output", str(out), "--workers", "2",
                    "--timeout", "0.5")
    assert "3 programs run" in proc.stderr
    rows = {r["id"]: r for r in read_jsonl(out)}
    assert set(rows) == {"good", "half", "loop"}
    for r in rows.values():
        assert set(r) == {"id", "pass_rate", "verdicts", "status"}
        assert set(r["verdicts"]) <= VERDICTS  # type: ignore[arg-type]
    assert rows["good"] == {"id": "good", "pass_rate": 1.0, "verdicts": ["PASSED", "PASSED"], "status": "OK"}
    assert rows["half"]["verdicts"] == ["PASSED", "FAILED"] and rows["half"]["pass_rate"] == 0.5
    assert rows["loop"]["verdicts"] == ["TIMEOUT"]

    # Resume: a crash left a torn last line; rerunning keeps what was written, redoes the rest.
    write_jsonl(inp, ROWS)
    text = out.read_text()
    out.write_text(text + '{"id": "syntax", "pass_ra')
    proc = acecoder("exec", "--input", str(inp), "--output", str(out), "--workers", "2")
    assert "1 programs run, 3 already in" in proc.stderr and "1 invalid" in proc.stderr
    rows2 = read_jsonl(out)
    assert [r["id"] for r in rows2][:3] == [r["id"] for r in read_jsonl_text(text)]
    by_id = {r["id"]: r for r in rows2}
    assert by_id["syntax"]["status"] == "SYNTAX_ERROR" and by_id["syntax"]["verdicts"] == ["ERROR"]
    assert by_id["no-tests"]["status"] == "INVALID_INPUT" and "tests is empty" in by_id["no-tests"]["error"]
    assert len(rows2) == 5

    proc = acecoder("exec", "--input", str(inp), "--output", str(out))
    assert "0 programs run, 5 already in" in proc.stderr


def read_jsonl_text(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(("content", "message"), [
    pytest.param("not json\n", "in.jsonl:1: not valid JSON", id="not-json"),
    pytest.param('{"program": "x", "tests": []}\n', '"id" must be a non-empty string', id="no-id"),
    pytest.param('{"id": "a", "program": 3, "tests": []}\n', '"program" must be a string', id="bad-program"),
    pytest.param('{"id": "a", "program": "", "tests": "x"}\n', '"tests" must be a list', id="bad-tests"),
    pytest.param('{"id": "a", "program": "", "tests": []}\n{"id": "a", "program": "", "tests": []}\n',
                 "in.jsonl:2: duplicate id", id="duplicate-id"),
])
def test_exec_rejects_bad_input_with_line_numbers(tmp_path: Path, content: str, message: str) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text(content)
    proc = acecoder("exec", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), check=False)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_missing_input_file(tmp_path: Path) -> None:
    proc = acecoder("exec", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o"),
                    check=False)
    assert proc.returncode == 2 and "No such file" in proc.stderr


def test_help_reads_well() -> None:
    top = acecoder("--help").stdout
    for word in ("exec", "serve", "demo", "examples:"):
        assert word in top
    assert "--input IN.jsonl" in acecoder("exec", "--help").stdout
    serve = acecoder("serve", "executor", "--help").stdout
    assert "--port" in serve and "--metrics-port" in serve and "--jail" in serve
