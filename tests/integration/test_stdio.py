"""Stdio tests over gRPC: the program runs whole on each test's input, and the server compares its
output with the expected output, which never reaches the program."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from acecoder.clients import ExecutorClient, Program, StdioTest
from acecoder.datasets import broken_stdio, load_stdio
from acecoder.executor.types import ProgramStatus, Verdict

DOUBLE = "n = int(input())\nprint(n * 2)\n"


@pytest.mark.slow
def test_python_references_pass_and_broken_variants_fail(client: ExecutorClient) -> None:
    problems = [p for p in load_stdio() if "python" in p.solutions]
    assert len(problems) >= 30
    programs = []
    for p in problems:
        timeout = 10.0  # generous: the references are verified; this is about verdicts
        for source in (p.solutions["python"], broken_stdio(p.solutions["python"])):
            programs.append(Program(source, [StdioTest(i, o) for i, o in p.tests],
                                    checker=p.checker, timeout=timeout,
                                    request_id=f"{p.task_id}:{len(programs) % 2}"))
    results = sorted(client.execute_batch(programs, deadline=600), key=lambda r: r.index)
    for p, ref, bad in zip(problems, results[::2], results[1::2]):
        assert ref.all_passed, (p.task_id, [t for t in ref.tests if t.verdict != Verdict.PASSED])
        assert bad.passed == 0, (p.task_id, bad.tests[:3])
    assert sum(len(r.tests) for r in results) > 1000


@pytest.mark.parametrize(("program", "verdicts", "kind"), [
    (DOUBLE, ["PASSED", "PASSED", "FAILED"], ""),
    ("import sys\nprint(int(input()) * 2)\nsys.exit(3)", ["ERROR"] * 3, "ExitStatus"),
    ("print(int(input()) * 2)\nraise ValueError('late')", ["ERROR"] * 3, "ExitStatus"),
    ("while True:\n    pass", ["TIMEOUT"] * 3, ""),
    ("x = ' ' * (10 ** 10)", ["MEMORY"] * 3, "MemoryError"),
    ("import os\nos.kill(os.getpid(), 11)", ["CRASHED"] * 3, ""),
    ("print('1' * (1 << 20))", ["ERROR"] * 3, "OutputLimitExceeded"),
    ("import os\nos._exit(0)", ["FAILED"] * 3, ""),  # said nothing: the output decides
])
def test_verdicts_come_from_the_exit_status_and_the_output(
        client: ExecutorClient, program: str, verdicts: list[str], kind: str) -> None:
    tests = [StdioTest("2\n", "4\n"), StdioTest("5", "10"), StdioTest("1", "3")]
    r = client.execute(program, tests, timeout=1.0, memory_mb=256, output_limit=64 * 1024)
    assert [v.value for v in r.verdicts] == verdicts, r
    assert r.tests[0].error_type == kind
    if verdicts[0] == "PASSED":
        assert all(t.cpu_seconds > 0 and t.peak_memory_kb > 1000 for t in r.tests)
        assert r.stdout == "2\n"  # the output of the first test that did not pass


def test_a_syntax_error_is_a_status_and_every_test_errs(client: ExecutorClient) -> None:
    r = client.execute("print(", [StdioTest("1", "1")] * 3)
    assert r.status is ProgramStatus.SYNTAX_ERROR
    assert r.verdicts == [Verdict.ERROR] * 3
    assert "SyntaxError" in r.stderr


@pytest.mark.parametrize(("checker", "got", "ok"), [
    ("tokens", "1   2\n3", True),
    ("exact", "1 2\n3", False),
    ("exact", "1 2\n3\n", True),
    ("lines", "1 2   \n3\n\n", True),
    ("lines", "1  2\n3\n", False),
    ("float:1e-6", "1.0000001 2 3", True),
    ("float:1e-6", "1.01 2 3", False),
    ("float_rel:1e-3", "1.0005 2 3", True),
])
def test_checkers(client: ExecutorClient, checker: str, got: str, ok: bool) -> None:
    program = f"import sys\nsys.stdout.write({got!r})\n"
    r = client.execute(program, [{"input": "", "output": "1 2\n3\n"}], checker=checker)
    assert r.verdicts == [Verdict.PASSED if ok else Verdict.FAILED], (checker, got, r)


def test_the_expected_output_never_reaches_the_program(client: ExecutorClient) -> None:
    """The program sees its input, its own directory and environment; the expected output is
    in none of them (it stays in the worker, which compares)."""
    secret = "EXPECTED-7f3a9c"
    probe = (
        "import os, sys\n"
        "seen = sys.stdin.read() + repr(dict(os.environ)) + repr(sys.argv)\n"
        "for root, dirs, files in os.walk('.'):\n"
        "    for f in files:\n"
        "        try:\n"
        "            seen += open(os.path.join(root, f), errors='replace').read()\n"
        "        except OSError:\n"
        "            pass\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        seen += os.read(fd, 1 << 20).decode(errors='replace')\n"
        "    except OSError:\n"
        "        pass\n"
        f"print('LEAKED' if {secret!r} in seen else 'clean')\n"
    )
    r = client.execute(probe, [StdioTest("some input", secret + "\n")])
    assert r.stdout.strip() == "clean" and r.verdicts == [Verdict.FAILED]


def test_bad_requests_are_refused_with_reasons(client: ExecutorClient) -> None:
    cases = [
        (dict(tests=["assert True"], checker="tokens"), "checker applies to stdio"),
        (dict(tests=[StdioTest("1", "1")], checker="fuzzy"), "unknown checker"),
        (dict(tests=[StdioTest("1", "1")], checker="float:2"), "tolerance"),
        (dict(tests=[StdioTest("1", "1")], output_limit=10), "output_limit_bytes"),
        (dict(tests=[StdioTest("1", "1")], setup="import os"), "setup applies"),
    ]
    for kwargs, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            client.execute("print(1)", **kwargs)  # type: ignore[arg-type]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (err.value.details() or ""), (kwargs, err.value.details())
    with pytest.raises(ValueError, match="all statements or all stdio"):
        client.execute("print(1)", ["assert True", StdioTest("1", "1")])


def test_exec_runs_stdio_records_in_every_ground_truth_format(tmp_path: Path) -> None:
    from tests.integration.test_cli import acecoder, read_jsonl, write_jsonl

    truth = {"inputs": ["2\n", "5\n"], "outputs": ["4\n", "10\n"]}
    third = [{"input": "", "output": "0.333"}]
    rows = [
        {"id": "list", "program": DOUBLE, "tests": [{"input": "2", "output": "4"}]},
        {"id": "object", "program": DOUBLE, "tests": truth},
        {"id": "string", "program": DOUBLE, "tests": json.dumps(truth)},
        {"id": "float", "program": "print(1 / 3)", "tests": third, "checker": "float:1e-3"},
        {"id": "float-tight", "program": "print(1 / 3)", "tests": third, "checker": "float:1e-6"},
        {"id": "limits", "program": "while True: pass", "tests": truth, "time_limit": 0.5,
         "memory_limit_mb": 128, "language": "python"},
        {"id": "asserts", "program": "def f(x):\n    return x\n", "tests": ["assert f(1) == 1"]},
    ]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, rows)
    acecoder("exec", "--input", str(inp), "--output", str(out), "--quiet")
    got = {r["id"]: r for r in read_jsonl(out)}
    assert set(got) == {r["id"] for r in rows}
    assert all(set(r) == {"id", "pass_rate", "verdicts", "status"} for r in got.values())
    for rid in ("list", "object", "string", "float", "asserts"):
        assert got[rid]["pass_rate"] == 1.0, got[rid]
    assert got["float-tight"]["verdicts"] == ["FAILED"]
    assert got["limits"]["verdicts"] == ["TIMEOUT", "TIMEOUT"]


@pytest.mark.parametrize(("row", "message"), [
    ({"language": "cobol"}, "is not one of"),
    ({"fn_name": "f"}, "must be a call test"),
    ({"checker": {"custom": ""}}, "a custom checker is"),
    ({"checker": {"other": "x"}}, "\"checker\" must be a string"),
    ({"tests": [{"input": "1"}]}, "stdio test"),
    ({"tests": {"inputs": ["1"], "outputs": []}}, "1 inputs but 0 outputs"),
    ({"time_limit": "1"}, "\"time_limit\" must be a number"),
])
def test_exec_refuses_malformed_stdio_records(tmp_path: Path, row: dict[str, object],
                                              message: str) -> None:
    from tests.integration.test_cli import acecoder, write_jsonl

    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, [{"id": "a", "program": DOUBLE, "tests": [{"input": "", "output": ""}],
                       **row}])
    proc = acecoder("exec", "--input", str(inp), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
