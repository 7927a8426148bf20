"""Every process that runs a request's code is under the seccomp filter, whichever kind of child
it is and wherever the filter is installed.

Where children run under uids of their own, the zygotes hold the filter and every child
inherits it; elsewhere each child installs its own (worker.seccomp_placement). Got wrong, some
kind of child would run a request's code unfiltered, so this is proven from both sides: each
spec a worker can spawn from is filtered by exactly one of its zygote or itself, in both
placements; and in a running server, each process that runs request code reads its own
`Seccomp:` mode from inside (an assert program, a fresh test process, a stdio program, a custom
checker, a C binary after `execve`), and the judge, which runs none, from outside."""

from __future__ import annotations

import os
import re

import pytest

from acecoder.clients import ExecutorClient, StdioTest
from acecoder.executor.sandbox import procs, seccomp
from acecoder.executor.sandbox.worker import child_specs, seccomp_placement
from acecoder.executor.types import Verdict
from tests.conftest import UID_BASE, RunningServer, process_statuses

FILTERED = 2  # /proc/<pid>/status "Seccomp:": 2 is SECCOMP_MODE_FILTER

MODE = "int(open('/proc/self/status').read().split('Seccomp:')[1].split()[0])"


@pytest.mark.parametrize("separate", [True, False], ids=["uid-per-kind", "one-uid"])
@pytest.mark.parametrize("on", [True, False], ids=["seccomp", "no-seccomp"])
def test_each_kind_of_child_is_filtered_exactly_once(separate: bool, on: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spec of both zygotes: filtered by the zygote (inherited) or by the child itself,
    never both, never neither while seccomp is on; the children the C loop execs itself
    (native) only where the zygote holds the filter, as they install none."""
    monkeypatch.setattr("acecoder.executor.sandbox.worker.separate_uids", lambda hello: separate)
    hello = {"slot": 0, "seccomp": on}
    zygote_holds, child_installs = seccomp_placement(hello)
    prog_specs, test_specs = child_specs(hello)
    assert len(prog_specs) == 4 and len(test_specs) == 2  # program, stdio, checker, native
    for spec in (*prog_specs, *test_specs):
        assert spec["seccomp"] == child_installs
        filtered = int(zygote_holds) + int(spec["seccomp"])
        assert filtered == (1 if on and seccomp.supported() else 0), spec
    native = procs.natives(prog_specs)
    assert (3 in native) == (not child_installs)
    assert all(not prog_specs[i]["seccomp"] for i in native)


def _filtered_in(statement: str) -> str:
    return f"assert {statement} == {FILTERED}, 'unfiltered'"


def test_an_assert_program_and_a_fresh_test_process_are_filtered(client: ExecutorClient) -> None:
    program = f"def mode():\n    return {MODE}\n"
    # the program process answers mode(); the test reads its own status (not a plain check:
    # a fresh test process runs it)
    r = client.execute(program, [_filtered_in("mode()"), _filtered_in(MODE)])
    assert r.verdicts == [Verdict.PASSED, Verdict.PASSED], r


def test_a_stdio_program_a_custom_checker_and_a_binary_are_filtered(
        client: ExecutorClient) -> None:
    r = client.execute(f"print({MODE})\n", [StdioTest("", str(FILTERED))])
    assert r.verdicts == [Verdict.PASSED], r
    checker = f"import sys\nsys.exit(0 if {MODE} == {FILTERED} else 1)\n"
    r = client.execute("print(1)\n", [StdioTest("", "1")], checker="custom",
                       checker_source=checker)
    assert r.verdicts == [Verdict.PASSED], r
    binary = ("#include <stdio.h>\n#include <string.h>\nint main(void){char l[256];"
              "FILE*f=fopen(\"/proc/self/status\",\"r\");while(f&&fgets(l,sizeof l,f))"
              "if(!strncmp(l,\"Seccomp:\",8))fputs(l+8,stdout);return 0;}\n")
    r = client.execute(binary, [StdioTest("", str(FILTERED))], language="c")
    assert r.verdicts == [Verdict.PASSED], r


def test_the_judge_is_filtered(client: ExecutorClient, server: RunningServer) -> None:
    """The judge runs no request's code, but it reads what a request's program returns: it is
    a confined, filtered process like any other (read from outside, by its uid)."""
    r = client.execute("def f(x):\n    return x\n", ["assert f(1) == 1"])
    assert r.verdicts == [Verdict.PASSED], r
    judges = {UID_BASE + 3 * k + 2 for k in range(server.workers)}
    modes = []
    for _, status in process_statuses(judges, server.proc.pid):
        mode = re.search(r"^Seccomp:\s+(\d+)", status, re.M)
        assert mode is not None
        modes.append(int(mode.group(1)))
    assert modes and set(modes) == {FILTERED}, modes
    assert os.geteuid() == 0  # make test runs as root: the uid-per-kind placement
