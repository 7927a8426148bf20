"""Custom checkers: a Python program sent with the request decides each stdio test by its exit
status (testlib's convention), running as untrusted code in a confined process of its own that
the program cannot reach."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from acecoder.clients import ExecutorClient, StdioTest
from acecoder.executor.types import Verdict
from tests.conftest import assert_no_leftovers

# Any divisor of n in (1, n) is a right answer: a problem with many valid outputs.
DIVISOR = """
import sys
n = int(open(sys.argv[1]).read())
got = open(sys.argv[2]).read().split()
want = open(sys.argv[3]).read().split()
if len(got) != 1 or not got[0].isdigit():
    print("expected one number", file=sys.stderr)
    sys.exit(2)
d = int(got[0])
sys.exit(0 if 1 < d < n and n % d == 0 and len(want) == 1 else 1)
"""
SMALLEST = "n = int(input())\nprint(next(d for d in range(2, n) if n % d == 0))\n"
LARGEST = "n = int(input())\nprint(max(d for d in range(2, n) if n % d == 0))\n"
TESTS = [StdioTest("12", "2"), StdioTest("35", "5"), StdioTest("49", "7")]


def test_a_custom_checker_accepts_every_valid_answer(client: ExecutorClient) -> None:
    for program in (SMALLEST, LARGEST):
        r = client.execute(program, TESTS, checker="custom", checker_source=DIVISOR)
        assert r.verdicts == [Verdict.PASSED] * 3, r
    wrong = client.execute("print(int(input()) - 1)\n", TESTS, checker="custom",
                           checker_source=DIVISOR)
    assert wrong.verdicts == [Verdict.FAILED] * 3, wrong
    words = client.execute("print('two')\n", TESTS, checker="custom", checker_source=DIVISOR)
    assert words.verdicts == [Verdict.FAILED] * 3
    assert "expected one number" in words.tests[0].error_message  # its comment, as testlib's


@pytest.mark.parametrize(("checker", "verdict", "said"), [
    ("import sys\nsys.exit(0)", Verdict.PASSED, ""),
    ("import sys\nsys.exit(1)", Verdict.FAILED, ""),
    ("import sys\nsys.exit(2)", Verdict.FAILED, ""),
    ("import sys\nsys.exit(3)", Verdict.ERROR, "status 3"),
    ("raise ValueError('checker bug')", Verdict.ERROR, "checker bug"),
    ("while True:\n    pass", Verdict.ERROR, "time limit"),
    ("def broken(:", Verdict.ERROR, "does not compile"),
    ("import os\nos.kill(os.getpid(), 9)", Verdict.ERROR, "SIGKILL"),
    ("print('x' * (1 << 20))", Verdict.ERROR, "wrote more than"),
])
def test_only_the_checkers_exit_status_decides(client: ExecutorClient, checker: str,
                                               verdict: Verdict, said: str) -> None:
    r = client.execute("print(1)\n", [StdioTest("", "1")], checker="custom",
                       checker_source=checker, timeout=1.0)
    assert r.verdicts == [verdict], r
    assert said in r.tests[0].error_message
    if verdict is Verdict.ERROR:
        assert r.tests[0].error_type == "CheckerError"


def test_the_checker_runs_apart_from_the_program(client: ExecutorClient, server) -> None:  # type: ignore[no-untyped-def]
    """The program prints its uid and leaves a process behind that signals every process it
    can, for ever; the checker passes only if it runs under another uid and is not disturbed."""
    program = ("import os, signal, time\nprint(os.getuid(), flush=True)\n"
               "if os.fork() == 0:\n    os.setsid()\n    while True:\n"
               "        for pid in range(2, 4000):\n            try:\n"
               "                os.kill(pid, signal.SIGKILL)\n            except OSError:\n"
               "                pass\n")
    checker = ("import os, sys, time\ntime.sleep(0.3)\n"
               "sys.exit(0 if int(open(sys.argv[2]).read()) != os.getuid() else 1)\n")
    r = client.execute(program, [StdioTest("", "")] * 3, checker="custom",
                       checker_source=checker, timeout=2.0)
    assert r.verdicts == [Verdict.PASSED] * 3, r
    assert_no_leftovers(root=server.proc.pid)


def test_a_checker_is_contained_like_a_program(client: ExecutorClient, server) -> None:  # type: ignore[no-untyped-def]
    checker = ("import os, socket, sys, time\n"
               "if os.fork() == 0:\n    os.setsid()\n    time.sleep(10**6)\n"
               "try:\n    socket.socket()\n    sys.exit(0)\nexcept OSError:\n    pass\n"
               "try:\n    open('/etc/acecoder-checker', 'w')\n    sys.exit(0)\n"
               "except OSError:\n    sys.exit(1)\n")
    r = client.execute("print(1)\n", [StdioTest("", "1")], checker="custom",
                       checker_source=checker)
    assert r.verdicts == [Verdict.FAILED], r  # no socket, no file outside: it said "wrong"
    assert_no_leftovers(root=server.proc.pid)


def test_custom_checkers_work_for_compiled_programs(client: ExecutorClient) -> None:
    program = ("#include <stdio.h>\nint main(){int n;scanf(\"%d\",&n);"
               "for(int d=n-1;d>1;d--)if(n%d==0){printf(\"%d\\n\",d);return 0;}return 1;}\n")
    r = client.execute(program, TESTS, language="c", checker="custom", checker_source=DIVISOR)
    assert r.verdicts == [Verdict.PASSED] * 3, r


def test_a_custom_checker_needs_its_source_and_nothing_else_takes_one(
        client: ExecutorClient) -> None:
    for kw in ({"checker": "custom"}, {"checker": "tokens", "checker_source": DIVISOR}):
        with pytest.raises(grpc.RpcError) as err:
            client.execute(SMALLEST, TESTS, **kw)  # type: ignore[arg-type]
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "checker_source" in err.value.details()


def test_exec_takes_a_custom_checker(tmp_path: Path) -> None:
    from tests.integration.test_cli import acecoder, write_jsonl

    tests = [{"input": t.input, "output": t.output} for t in TESTS]
    write_jsonl(tmp_path / "in.jsonl", [
        {"id": "largest", "program": LARGEST, "tests": tests, "checker": {"custom": DIVISOR}},
        {"id": "wrong", "program": "print(1)", "tests": tests, "checker": {"custom": DIVISOR}},
    ])
    out = tmp_path / "out.jsonl"
    acecoder("exec", "--input", str(tmp_path / "in.jsonl"), "--output", str(out))
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert got["largest"]["pass_rate"] == 1.0
    assert got["wrong"]["verdicts"] == ["FAILED"] * 3
