"""The executor's pod keeps only the capabilities its manifest lists, with no new privileges.
Here the executor runs under exactly that set (`setpriv`, read from the rendered manifest):
it starts its jail, runs programs right, and still contains hostile ones. (Run as root, as
the container is.)"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator

import pytest

from acecoder.clients import ExecutorClient
from acecoder.executor.types import Verdict
from acecoder.serving import spawn_server
from tests.adversarial.test_containment import CASES
from tests.conftest import assert_no_leftovers
from tests.k8s.test_manifests import pod, render, workloads


def manifest_capabilities() -> list[str]:
    executor = workloads(render("dev"))["acecoder-executor"]
    sc = pod(executor)["containers"][0]["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False
    return [c.lower() for c in sc["capabilities"]["add"]]


@pytest.fixture(scope="module")
def confined() -> Iterator[tuple[str, str, int]]:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the executor with the pod's caps"
    assert os.geteuid() == 0, "run as root: the executor's container does"
    caps = manifest_capabilities()
    cmd = [setpriv, "--no-new-privs", "--bounding-set=-all," + ",".join("+" + c for c in caps),
           "--inh-caps=-all", sys.executable, "-m", "acecoder.cli", "serve", "executor",
           "--port", "0", "--workers", "2"]
    proc, m = spawn_server(cmd, r"listening on (\S+) \(jail: (\w+)", "the confined executor")
    yield m.group(1), m.group(2), proc.pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_the_jail_starts_with_only_those_capabilities(confined: tuple[str, str, int]) -> None:
    target, jail, _ = confined
    if shutil.which("firejail"):
        assert jail == "firejail"  # the preferred jail, not a fallback
    with ExecutorClient(target) as ex:
        ok = ex.execute("def f(x):\n    return 2 * x\n", ["assert f(2) == 4", "assert f(3) == 6"])
        assert ok.all_passed
        # the sandbox still holds: no writing outside its temp dir, no secrets, no network
        for program in ("open('/etc/passwd', 'a').write('x')\n",
                        "open('/etc/shadow').read()\n",
                        "import socket\nsocket.create_connection(('1.1.1.1', 53), 2)\n"):
            got = ex.execute(program + "def f(x):\n    return x\n", ["assert f(1) == 1"])
            assert got.verdicts == [Verdict.ERROR], (program, got)


@pytest.mark.parametrize(("program", "allowed"), CASES)
def test_hostile_programs_stay_contained(confined: tuple[str, str, int], program: str,
                                         allowed: set[Verdict]) -> None:
    with ExecutorClient(confined[0]) as ex:
        result = ex.execute(program, ["assert f(2) == 7", "assert f(3) == 10"], timeout=1.0,
                            memory_mb=256)
        assert result.verdicts[0] in allowed, result
        assert_no_leftovers(root=confined[2])
        assert ex.execute("def f(x):\n    return 3 * x + 1\n", ["assert f(2) == 7"]).all_passed
