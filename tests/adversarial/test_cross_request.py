"""One request never reaches another: hostile request sequences through one long-lived server.

Each scenario sends attacker requests (hostile programs, hostile tests) to a server with a single
worker, so that every request lands on the same worker, then an honest victim request; the
victim's verdicts, status, output and flags must be exactly what a server that never saw the
attacker answers. Each attack goes through one mechanism by which state could outlive a
request: a reused test process, a zygote's heap, kernel objects, the output pipe, the CPU
placement, memory that accumulates, debris on disk, processes left running.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator

import pytest

from acecoder.clients import ExecutorClient
from acecoder.executor.sandbox.worker import _DETACH_TOGETHER, _PARKED
from acecoder.executor.types import ProgramStatus, Verdict
from tests.conftest import (
    UID_BASE,
    RunningServer,
    _descendants,
    assert_no_leftovers,
    process_statuses,
    start_server,
    stop_server,
)

random.seed(1234)
AFTER_SEED = random.random()  # what random.random() gives right after random.seed(1234)
random.seed()

VICTIM = "import math\ndef f(xs):\n    print('victim output')\n    return sorted(xs)\n"
# Two victims: one whose suite looks side-effect free (the kind a "pure suite" analysis would
# have let share a test process with other such suites), one that does not.
PURE_VICTIM_TESTS = [
    "assert f([2, 1]) == [1, 2]",
    "import math\nassert not math.isclose(1.0, 2.0)",
    "assert f([1]) == [2]",  # FAILED, whatever an attacker did to the classifier
    f"import random\nassert random.random() != {AFTER_SEED!r}",
    "assert len(f([1, 2])) == 2 and abs(-2) == 2",
]
# A suite of plain checks (literal.py): the judge runs it, the process that outlives requests.
# It reads builtins (len, abs, max) from the judge's table of the real ones.
JUDGED_VICTIM_TESTS = [
    "assert f([2, 1]) == [1, 2]",
    "assert len(f([1, 2])) == 2 and abs(-2) == 2 and max([1, 3]) == 3",
    "assert f([1]) == [2]",  # FAILED, whatever an attacker did
    "def check(candidate):\n    assert candidate([3, 1, 2]) == [1, 2, 3]\n"
    "    assert candidate([5]) == [5]\ncheck(f)",
]
VICTIM_TESTS = [
    "assert f([2, 1]) == [1, 2]",
    "assert len(f([1, 2])) == 2",
    "assert not math.isclose(1.0, 2.0)",
    "assert f([1]) == [2]",  # FAILED, whatever an attacker did to the classifier
    "import sys\nassert 'this' not in sys.modules and 'numbers' not in dir()",
    f"import random\nassert random.random() != {AFTER_SEED!r}",
    "assert isinstance(f([]), list) and abs(-2) == 2 and max([1, 3]) == 3",
]

# Attacks: (program, tests). Each is one mechanism, hit by computed names where names matter.
# (fds 3 and 4 are the writer's own channel to the worker's side: a forged frame there is a
# crash of its own request, tested elsewhere; this is about reaching anything else)
ZYGOTE_ORDERS = (
    "import os, socket, struct\n"
    "orders = [struct.pack('=ii', ord(k), n) for k, n in (('S', 0), ('S', 1), ('S', 2),\n"
    "          ('R', -1), ('W', 1), ('W', -1), ('B', -1), ('X', 0))]\n"
    "for fd in range(1024):\n"
    "    if fd in (3, 4):\n        continue\n"
    "    for order in orders:\n"
    "        try:\n            os.write(fd, order)\n        except OSError:\n            pass\n"
    "        try:\n"
    "            s = socket.socket(fileno=os.dup(fd))\n"
    "            try:\n                socket.send_fds(s, [order], [0, 1])\n"
    "            finally:\n                s.close()\n"
    "        except OSError:\n            pass\n"
)

ATTACKS = {
    # Side-effect-free-looking suites: no underscore names, no setattr/getattr/vars, only
    # "stateless" modules; attribute names arrive as strings.
    "pure-looking-patch-of-math": (
        "def f(x):\n    return x\n",
        ["import math, operator\n"
         "operator.setitem(operator.attrgetter('__dict__')(math), 'isclose', lambda *a, **k: True)"]),
    "pure-looking-patch-of-the-harness": (
        "def f(x):\n    return x\n",
        ["import operator\n"
         "g = operator.attrgetter('__class__.__init__.__globals__')(f)\n"
         "operator.setitem(g, '_classify', lambda e: ('PASSED', '', ''))\n"
         "b = operator.getitem(g, '__builtins__')\n"
         "operator.setitem(operator.attrgetter('__dict__')(b) if not isinstance(b, dict) else b, "
         "'len', lambda x: 0)"]),
    "pure-looking-seed": ("def f(x):\n    return x\n", ["import random\nrandom.seed(1234)"]),
    "poison-builtins-by-computed-names": (
        "def f(x):\n    return x\n",
        ["import builtins\nsetattr(builtins, 'l' + 'en', lambda x: 0)\n"
         "setattr(builtins, 'Assertion' + 'Error', KeyError)\n"
         "setattr(builtins, 'is' + 'instance', lambda *a: False)\n"
         "vars(builtins)['a' + 'bs'] = lambda x: -1"]),
    "poison-math-and-harness-via-dicts": (
        "def f(x):\n    return x\n",
        ["import math, sys, gc, types\nvars(math)['is' + 'close'] = lambda *a, **k: True\n"
         "for name, m in list(sys.modules.items()):\n"
         "    if 'acecoder' in name:\n"
         "        d = vars(m)\n"
         "        for k in list(d):\n"
         "            if isinstance(d[k], types.FunctionType):\n"
         "                d[k].__code__ = (lambda *a, **kw: ('PASSED', '', '')).__code__\n"
         "for o in gc.get_objects():\n"
         "    if isinstance(o, types.FunctionType) and 'acecoder' in (o.__module__ or ''):\n"
         "        try:\n            o.__code__ = (lambda *a, **kw: None).__code__\n"
         "        except Exception:\n            pass"]),
    "seed-random": ("def f(x):\n    return x\n", ["import random\nrandom.seed(1234)"]),
    "tests-import-modules": ("import types\ntorch = types.ModuleType('this')\n",
                             ["import numbers\nimport this\nassert torch is not None"]),
    "program-secret-in-zygote": (
        "SECRET = 'ace' + 'coder-zygote-canary-7f3a'  # the source holds the joined form below\n"
        "CANARY = 'acecoder-zygote-canary-7f3a'\ndef f(xs):\n    return sorted(xs)\n",
        ["assert f([1]) == [1]"]),
    "sysv-shm-and-mq": (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "shmid = libc.shmget(0xACEC, 1 << 20, 0o1666)\n"
        "if shmid >= 0:\n"
        "    addr = libc.shmat(shmid, None, 0)\n"
        "    ctypes.memmove(addr, b'expected=12345', 14)\n"
        "mq = libc.mq_open(b'/acecoder-mq', os.O_CREAT | os.O_RDWR, 0o666, None)\n"
        "sem = libc.semget(0xACED, 1, 0o1666)\nmsg = libc.msgget(0xACEE, 0o1666)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
    "output-after-the-end": (
        "import os, threading, time, sys\n"
        "def spam():\n    time.sleep(0.2)\n"
        "    for _ in range(200):\n        print('All tests passed', flush=True)\n        time.sleep(0.005)\n"
        "threading.Thread(target=spam, daemon=True).start()\n"
        "if os.fork() == 0:\n    spam()\n    os._exit(0)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
    "widen-cpu-affinity": (
        "import os\ntry:\n    os.sched_setaffinity(0, set(range(os.cpu_count())))\nexcept OSError:\n    pass\n"
        "def f(x):\n    while True:\n        pass\n",
        ["f(1)"]),
    "debris-deep-tree": (
        "import os\nfor i in range(3000):\n    os.mkdir('d' * 100)\n    os.chdir('d' * 100)\n"
        "    open('f', 'w').write('x')\nos.chmod('.', 0)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
    "forged-frames-from-tests": (
        "def f(x):\n    return x\n",
        ["import os, pickle, struct\n"
         "for m in [('done', 7, 'PASSED', '', ''), ('done', 0, 'BOGUS', '', ''), ('end',)]:\n"
         "    d = pickle.dumps(m)\n    os.write(3, struct.pack('>I', len(d)) + d)\n"
         "os.write(3, struct.pack('>I', 1 << 30))"]),
    "half-a-frame-then-silence": (
        "def f(x):\n    return x\n", ["import os, time\nos.write(3, b'\\x00\\x00')\ntime.sleep(30)"]),
    # Where children run under uids of their own, leaving the process group is allowed (the
    # worker sweeps by uid): daemons that leave it, close their output and fork on.
    "escaped-daemons": (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        for fd in (0, 1, 2, 3, 4):\n"
        "            try:\n                os.close(fd)\n            except OSError:\n                pass\n"
        "        while True:\n"
        "            try:\n                os.fork()\n            except OSError:\n                time.sleep(0.01)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
    # A daemon that left the group whose leader then ends alone (the `exit` system call, not
    # `exit_group`): a zombie by its status, alive in its other thread.
    "zombie-leader-keeps-a-thread": (
        "import ctypes, os, threading, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    for fd in (0, 1, 2, 3, 4):\n"
        "        try:\n            os.close(fd)\n        except OSError:\n            pass\n"
        "    def spin():\n"
        "        while True:\n"
        "            time.sleep(0.01)\n"
        "    threading.Thread(target=spin).start()\n"
        "    ctypes.CDLL(None).syscall({'x86_64': 60, 'aarch64': 93}[os.uname().machine], 0)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
    # A daemon that is never the same process for long: each forks its successor and exits,
    # so a sweep that reads /proc must still catch the chain (a pid it listed may be gone by
    # the time it reads it, its successor not yet listed).
    "fork-hopping-daemon": (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    for fd in (0, 1, 2, 3, 4):\n"
        "        try:\n            os.close(fd)\n        except OSError:\n            pass\n"
        "    while True:\n"
        "        try:\n"
        "            if os.fork():\n                os._exit(0)\n"
        "        except OSError:\n            time.sleep(0.001)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
    "daemon-signals-everyone": (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    while True:\n"
        "        for pid in range(2, 400):\n"
        "            for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
        "                try:\n                    os.kill(pid, sig)\n"
        "                except OSError:\n                    pass\n"
        "            try:\n                os.setpriority(os.PRIO_PROCESS, pid, 19)\n"
        "            except OSError:\n                pass\n"
        "        time.sleep(0.001)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
    # kill(-1) from the request's own uid, in a loop that the end of the request finds
    # running: aimed at the instant the worker takes on that uid to sweep it.
    "daemon-signals-all-it-may": (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    for fd in (0, 1, 2, 3, 4):\n"
        "        try:\n            os.close(fd)\n        except OSError:\n            pass\n"
        "    while True:\n"
        "        for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
        "            try:\n                os.kill(-1, sig)\n"
        "            except OSError:\n                pass\n"
        "time.sleep(0.2)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
    # The zygotes take 8-byte binary orders on a socket ("S" fork a child of kind n, "R"
    # reap and count, "W" wait for a pid): orders written on every other fd a program or a
    # fresh test process holds, in every form, reach no zygote (no child holds its socket).
    "zygote-orders-on-every-fd": (
        ZYGOTE_ORDERS + "def f(x):\n    return x\n",
        [ZYGOTE_ORDERS + "assert f(1) == 1"]),
    # A program that makes itself the reaper of its orphans, then forks chains that orphan
    # themselves to it and to the worker: the end of a request counts the zygotes' children
    # and the worker's, and must still wait for every one of them.
    # The program's own reply channel (fd 4), read by a test process or by the judge, which
    # takes each frame in as few reads as it arrives in: forged frames beyond the reply, a
    # frame trickled a byte at a time, a header announcing a frame that never comes. Each is
    # the attacker's own request's problem; the reader is per pipe, the pipe per request.
    "extra-reply-frames": (
        "import os, pickle, struct\n"
        "def frame(v):\n"
        "    d = pickle.dumps(v)\n    return struct.pack('>I', len(d)) + d\n"
        "def f(x):\n"
        "    os.write(4, frame(('value', [1, 2])) * 3 + frame(('result', ('value', [1, 2]), ())))\n"
        "    return x\n",
        ["assert f([2, 1]) == [1, 2]"]),
    "trickled-reply-frames": (
        "import os, pickle, struct, time\n"
        "def f(x):\n"
        "    d = pickle.dumps(('result', ('value', [1, 2]), ()))\n"
        "    for b in struct.pack('>I', len(d)) + d:\n"
        "        os.write(4, bytes([b]))\n        time.sleep(0.001)\n"
        "    return x\n",
        ["assert f([2, 1]) == [1, 2]"]),
    "reply-header-of-a-frame-that-never-comes": (
        "import os, struct\n"
        "def f(x):\n    os.write(4, struct.pack('>I', 60 << 20) + b'x' * 1000)\n    return x\n",
        ["assert f([2, 1]) == [1, 2]"]),
    # A fresh test process's own daemons (the test uid): gone before the next request, even
    # one the judge serves (it spawns no test process, and collects none).
    "tests-leave-daemons": (
        "def f(x):\n    return x\n",
        ["import os, time\n"
         "for _ in range(3):\n"
         "    if os.fork() == 0:\n"
         "        os.setsid()\n"
         "        for fd in range(5):\n"
         "            try:\n                os.close(fd)\n            except OSError:\n                pass\n"
         "        time.sleep(1000)\n"
         "assert True"]),
    "subreaper-program-with-orphans": (
        "import ctypes, os, time\n"
        "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        for fd in (0, 1, 2, 3, 4):\n"
        "            try:\n                os.close(fd)\n            except OSError:\n                pass\n"
        "        if os.fork():\n            os._exit(0)  # its child is the program's now\n"
        "        while True:\n            time.sleep(0.01)\n"
        "time.sleep(0.1)\n"
        "def f(x):\n    return x\n",
        ["assert f(1) == 1"]),
}


def _serve() -> Iterator[tuple[RunningServer, ExecutorClient]]:
    server = start_server(workers=1)
    try:
        with ExecutorClient(server.target, timeout=120) as client:
            yield server, client
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def alone() -> Iterator[ExecutorClient]:
    """A server that only ever runs victims: the reference."""
    for _, client in _serve():
        yield client


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[RunningServer, ExecutorClient]]:
    """The server attackers and victims share, with one worker: every request meets the last."""
    yield from _serve()


def _essentials(r):  # type: ignore[no-untyped-def]
    return ([(t.verdict, t.error_type) for t in r.tests], r.status, r.stdout, r.stderr,
            r.flags, r.stdout_truncated)


def test_the_judged_victim_is_a_suite_of_plain_checks() -> None:
    from acecoder.executor.sandbox import literal

    assert literal.plain_suite(JUDGED_VICTIM_TESTS, "") == {"f", "len", "abs", "max"}
    assert literal.plain_suite(VICTIM_TESTS, "") is None  # the others: fresh test processes
    assert literal.plain_suite(PURE_VICTIM_TESTS, "") is None


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_victim_after_attacker_is_answered_as_alone(alone, shared, attack: str) -> None:  # type: ignore[no-untyped-def]
    _, client = shared
    program, tests = ATTACKS[attack]
    for victim_tests in (PURE_VICTIM_TESTS, VICTIM_TESTS, JUDGED_VICTIM_TESTS):
        reference = alone.execute(VICTIM, victim_tests, timeout=5.0)
        assert reference.verdicts.count(Verdict.PASSED) == len(victim_tests) - 1, reference
        for _ in range(2):
            hostile = client.execute(program, tests, timeout=1.0)
            assert len(hostile.verdicts) == len(tests)  # the attacker's request is answered too
            victim = client.execute(VICTIM, victim_tests, timeout=5.0)
            assert _essentials(victim) == _essentials(reference), (attack, victim, hostile)


@pytest.mark.parametrize("attack", ["escaped-daemons", "zombie-leader-keeps-a-thread",
                                    "fork-hopping-daemon", "daemon-signals-all-it-may",
                                    "subreaper-program-with-orphans",
                                    "zygote-orders-on-every-fd"])
def test_nothing_of_a_request_runs_once_the_next_has_started(shared, attack: str) -> None:  # type: ignore[no-untyped-def]
    """Daemons that left their process group and closed every pipe (or live on in a thread
    behind a zombie leader) are gone before the next request runs: only the one pre-spawned
    spare of the slot's program uid is left."""
    server, client = shared
    program, tests = ATTACKS[attack]
    for _ in range(3):
        assert len(client.execute(program, tests, timeout=1.0).verdicts) == 1
        assert client.execute(VICTIM, PURE_VICTIM_TESTS, timeout=5.0).verdicts[0] is Verdict.PASSED
        assert_no_leftovers(workers=1, root=server.proc.pid)


def test_a_test_process_is_gone_before_a_judged_request_runs(shared) -> None:  # type: ignore[no-untyped-def]
    """A fresh test process and the daemons its tests fork (the slot's test uid) are gone,
    zombies included, once the next request, which the judge serves, has started: the worker
    collects test processes after each request that spawned one, and only then skips it."""
    server, client = shared
    program, tests = ATTACKS["tests-leave-daemons"]
    for _ in range(3):
        assert client.execute(program, tests, timeout=2.0).verdicts == [Verdict.PASSED]
        victim = client.execute(VICTIM, JUDGED_VICTIM_TESTS, timeout=5.0)
        assert victim.verdicts == [Verdict.PASSED, Verdict.PASSED, Verdict.FAILED,
                                   Verdict.PASSED]
        left = [status.split("\n", 1)[0] for _, status in
                process_statuses({UID_BASE + 1}, server.proc.pid)]  # slot 0's test uid
        assert left == [], left


# Needs most of its uid's process limit (ExecutorConfig.processes, 32): 24 threads at once.
CROWDED_VICTIM = ("import threading\n"
                  "threading.stack_size(1 << 18)  # 24 stacks fit the address space\n"
                  "def f(x):\n"
                  "    gate = threading.Event()\n"
                  "    ts = [threading.Thread(target=gate.wait) for _ in range(24)]\n"
                  "    for t in ts:\n        t.start()\n"
                  "    gate.set()\n"
                  "    for t in ts:\n        t.join()\n"
                  "    return x\n")
# Fills that limit with daemons that hold no pipe: the end of its request kills them, and
# the next request starts without waiting for their output.
PROCESS_HOARDER = ("import os, time\n"
                   "for _ in range(30):\n"
                   "    try:\n"
                   "        if os.fork() == 0:\n"
                   "            os.setsid()\n"
                   "            for fd in range(5):\n"
                   "                try:\n                    os.close(fd)\n"
                   "                except OSError:\n                    pass\n"
                   "            time.sleep(1000)\n"
                   "    except OSError:\n        break\n"
                   "def f(x):\n    return x\n")


def test_a_request_s_processes_count_against_no_later_request(shared) -> None:  # type: ignore[no-untyped-def]
    """Killed processes count against their uid's process limit until they are reaped: the
    next request gets the whole limit all the same."""
    _, client = shared
    for _ in range(5):
        assert len(client.execute(PROCESS_HOARDER, ["assert f(1) == 1"], timeout=2.0).verdicts) == 1
        r = client.execute(CROWDED_VICTIM, ["assert f(1) == 1"], timeout=5.0)
        assert r.verdicts == [Verdict.PASSED], r


def test_no_zygote_holds_another_requests_program(shared) -> None:  # type: ignore[no-untyped-def]
    """The next program scans its whole address space for the last program's source."""
    _, client = shared
    program, tests = ATTACKS["program-secret-in-zygote"]
    scanner = (
        "import ctypes, re\n"
        "def scan():\n"
        "    needle = ('acecoder-zygote-' + 'canary-7f3a').encode()\n"
        "    found = 0\n"
        "    with open('/proc/self/maps') as maps:\n"
        "        regions = [line for line in maps if re.match(r'[0-9a-f]+-[0-9a-f]+ r', line)]\n"
        "    for line in regions:\n"
        "        if '[v' in line or '/' in line:\n"
        "            continue  # anonymous memory only: heap, stacks, arenas\n"
        "        lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n"
        "        found += ctypes.string_at(lo, hi - lo).count(needle)\n"
        "    return found\n")
    for _ in range(3):
        assert client.execute(program, tests).all_passed
        r = client.execute(scanner, ["assert scan() <= 2, scan()"])  # its own needle only
        assert r.all_passed, r


@pytest.mark.parametrize(("call", "name"), [
    ("libc.shmget(0xACEC, 4096, 0o1666)", "shmget"),
    ("libc.semget(0xACED, 1, 0o1666)", "semget"),
    ("libc.msgget(0xACEE, 0o1666)", "msgget"),
    ("libc.mq_open(b'/acecoder-mq', os.O_CREAT | os.O_RDWR, 0o666, None)", "mq_open"),
    ("libc.sched_setaffinity(0, 128, (ctypes.c_ulong * 16)(*([~0 & 0xFFFFFFFFFFFFFFFF] * 16)))",
     "sched_setaffinity"),
])
def test_objects_that_outlive_a_process_are_denied(shared, call: str, name: str) -> None:  # type: ignore[no-untyped-def]
    _, client = shared
    prog = (f"import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"def attempt():\n    rc = {call}\n    return (rc, ctypes.get_errno())\n")
    r = client.execute(prog, ["assert attempt() == (-1, 1)"])  # EPERM
    assert r.all_passed, (name, r)


def _worker_rss_kb(server: RunningServer) -> int:
    """RSS of the server's worker processes (not their zygotes or children)."""
    procs: dict[int, tuple[int, str, int]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = open(f"/proc/{pid}/status").read()
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        rss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        procs[int(pid)] = (ppid, cmd, int(rss.group(1)) if rss else 0)

    def descends(pid: int) -> bool:
        while pid in procs and pid > 1:
            if pid == server.proc.pid:
                return True
            pid = procs[pid][0]
        return False

    def is_worker(pid: int) -> bool:  # the Python worker, not the jail tool's wrapper
        argv = procs.get(pid, (0, "", 0))[1].split("\0")
        return "python" in os.path.basename(argv[0]) and "acecoder.executor.sandbox.worker" in argv

    workers = [rss for pid, (ppid, _, rss) in procs.items()
               if is_worker(pid) and not is_worker(ppid) and descends(pid)]
    assert len(workers) == server.workers, workers
    return sum(workers)


def test_memory_does_not_accumulate(shared) -> None:  # type: ignore[no-untyped-def]
    """Unique large suites, and exceptions whose tracebacks hold big frames, request after
    request: the worker does not grow, and an honest program still gets its memory."""
    server, client = shared
    client.execute("def f(x):\n    return x\n", ["assert f(1) == 1"])
    before = _worker_rss_kb(server)
    for i in range(40):
        big = f"blob = {'x' * 200_000!r} + {str(i)!r}\n"
        tests = [big + "def g():\n    ballast = bytearray(20 << 20)\n    raise ValueError(blob)\ng()",
                 big + f"assert f({i}) == {i}"]
        r = client.execute("def f(x):\n    return x\n", tests)
        assert r.verdicts == [Verdict.ERROR, Verdict.PASSED], r
    after = _worker_rss_kb(server)
    assert after - before < 16 * 1024, (before, after)
    honest = client.execute("def f(n):\n    return len(bytearray(n << 20))\n",
                            ["assert f(600) == 600 << 20"], memory_mb=1024)
    assert honest.all_passed, honest


def test_a_slow_killed_request_finishes_before_the_next_starts(shared) -> None:  # type: ignore[no-untyped-def]
    """A program killed at its time limit with much memory and output in flight: the next
    request's output and verdicts are its own."""
    _, client = shared
    hog = ("import sys\ndef f(x):\n    a = bytearray(400 << 20)\n"
           "    while True:\n        sys.stdout.write('PASSED\\n' * 1000)\n")
    t = time.monotonic()
    r = client.execute(hog, ["f(1)"], timeout=0.5, memory_mb=1024)
    assert r.verdicts == [Verdict.TIMEOUT] and time.monotonic() - t < 10
    victim = client.execute(VICTIM, VICTIM_TESTS, timeout=5.0)
    assert victim.stdout.count("victim output") == victim.stdout.count("\n") and victim.flags == ()


def _pool_processes(root: int) -> set[tuple[int, str]]:
    """The server's long-lived processes (jail, worker, zygotes; not its short-lived children)."""
    out = set()
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name in ("python", "firejail", "bwrap", "unshare"):
            out.add((pid, name))
    return out


def test_no_order_a_request_writes_reaches_a_zygote(shared) -> None:  # type: ignore[no-untyped-def]
    """Zygote orders written on every fd by the program and by a fresh test process: no
    zygote obeys (one that got "X" would end, and its worker with it), no process is forked for
    them, and the worker, its zygotes and its jail are the same processes afterwards."""
    server, client = shared
    client.execute(VICTIM, PURE_VICTIM_TESTS, timeout=5.0)
    before = _pool_processes(server.proc.pid)
    program, tests = ATTACKS["zygote-orders-on-every-fd"]
    for _ in range(3):
        hostile = client.execute(program, tests, timeout=5.0)
        # loaded (the program's loop ran), then the test ran its own loop before calling it
        assert hostile.status is not ProgramStatus.LOAD_CRASHED and len(hostile.verdicts) == 1
        assert client.execute(VICTIM, PURE_VICTIM_TESTS, timeout=5.0).verdicts[0] is Verdict.PASSED
        assert_no_leftovers(workers=1, root=server.proc.pid)
    assert _pool_processes(server.proc.pid) == before


# A compiled program is exec'd by the program zygote's C loop itself (a native child): it
# holds fds 0-2 only, so the zygote's order socket and its job pipe are out of its reach. It
# tries anyway: orders (fork spec 0..3, reap, wait, an unknown letter) written, and sent with
# fds, on every fd it can name, and a kill of its parent. It prints which fds above 2 it found
# open and whether the kill went through.
_NATIVE_ORDERS = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
int main(void) {
    int open_fds = 0;
    for (int fd = 0; fd < 1024; fd++) {
        int orders[][2] = {{'S', 0}, {'S', 3}, {'R', -1}, {'W', 1}, {'X', 0}};
        for (int k = 0; k < 5; k++) {
            if (fd > 2 && write(fd, orders[k], sizeof orders[k]) >= 0) open_fds++;
            struct iovec iov = {orders[k], sizeof orders[k]};
            union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr a; } c;
            struct msghdr m;
            memset(&m, 0, sizeof m);
            m.msg_iov = &iov; m.msg_iovlen = 1;
            m.msg_control = c.buf; m.msg_controllen = sizeof c.buf;
            struct cmsghdr *h = CMSG_FIRSTHDR(&m);
            h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int));
            int one = 1; memcpy(CMSG_DATA(h), &one, sizeof one);
            sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
    }
    int killed = kill(getppid(), SIGKILL) == 0;
    printf(open_fds || killed ? "reached fds=%d killed=%d\n" : "contained\n", open_fds, killed);
    return 0;
}
"""


def test_a_native_child_reaches_no_zygote(shared) -> None:  # type: ignore[no-untyped-def]
    """What the program zygote hands a compiled program: its input, output and error, nothing
    else. Orders written and sent on every fd, and a kill of its parent, change nothing: the
    worker, its zygotes and its jail are the same processes afterwards, nothing is left, and
    the next request is answered as alone."""
    from acecoder.clients import StdioTest

    server, client = shared
    client.execute(VICTIM, PURE_VICTIM_TESTS, timeout=5.0)
    before = _pool_processes(server.proc.pid)
    for _ in range(3):
        hostile = client.execute(_NATIVE_ORDERS, [StdioTest("", "contained")] * 3,
                                 language="c", timeout=5.0)
        assert hostile.verdicts == [Verdict.PASSED] * 3, (hostile.stdout, hostile)
        assert client.execute(VICTIM, PURE_VICTIM_TESTS, timeout=5.0).verdicts[0] is Verdict.PASSED
        assert_no_leftovers(workers=1, root=server.proc.pid)
    assert _pool_processes(server.proc.pid) == before


_LEAVE_A_SECRET = (
    "import os\n"
    "open('secret', 'w').write('s3cret')\n"
    "os.makedirs('open/door', exist_ok=True)\n"
    "for d in ('.', 'open', 'open/door'):\n    os.chmod(d, 0o777)\n"
    "print(os.getcwd(), file=__import__('sys').stderr)\n"
    "def f(x):\n    return x\n"
)
_PROBE = (
    "import os\n"
    "def probe(paths):\n"
    "    out = []\n"
    "    for p in paths:\n"
    "        for what in (lambda: os.listdir(p), lambda: open(p + '/secret').read(),\n"
    "                     lambda: os.listdir(p + '/open/door'), lambda: os.chmod(p, 0o777),\n"
    "                     lambda: os.rename(p, p + '-mine'), lambda: os.stat(p + '/secret'),\n"
    "                     lambda: os.open(p + '/open', os.O_RDONLY | os.O_DIRECTORY)):\n"
    "            try:\n                what()\n                out.append(p)\n"
    "            except OSError:\n                pass\n"
    "    return out\n"
    "def job_mounts():\n"
    "    with open('/proc/self/mountinfo') as f:\n"
    "        return sum(1 for line in f if line.split()[4].startswith('/tmp/acecoder/'))\n"
)


def test_an_ended_request_s_directory_is_closed_to_every_later_one(shared) -> None:  # type: ignore[no-untyped-def]
    """A request's directory (a tmpfs of its own) is detached a little after the request ends,
    while the next one runs; from the moment it ends, no later request (the same program uid)
    can enter it, read what it left, or take it over, whatever modes it set on its files and
    directories; and directories of ended requests do not pile up (blank ones wait in their
    holder for the rest of its batch: see the next test)."""
    from acecoder.clients import StdioTest

    server, client = shared
    left: list[str] = []
    for _ in range(3):
        r = client.execute(_LEAVE_A_SECRET, ["assert f(1) == 1"])
        assert r.verdicts == [Verdict.PASSED], r
        left.append(r.stderr.strip())
        r = client.execute(_LEAVE_A_SECRET + "print(input())\n", [StdioTest("x", "x")])
        assert r.verdicts == [Verdict.PASSED], r
        left.append(r.stderr.strip())
    assert len(set(left)) == 6 and all(p.startswith("/tmp/acecoder/") for p in left), left
    # At load (while the worker may still be detaching the last directory), then in a test.
    probe = _PROBE + f"AT_LOAD = probe({left!r})\ndef at_load():\n    return AT_LOAD\n"
    r = client.execute(probe, ["found = at_load()\nassert found == [], found",
                               f"found = probe({left!r})\nassert found == [], found",
                               f"mounts = job_mounts()\nassert mounts <= {MOUNTS}, mounts"])
    assert r.verdicts == [Verdict.PASSED] * 3, [t.error_message for t in r.tests]
    r = client.execute(probe + f"print(AT_LOAD, job_mounts() <= {MOUNTS})\n",
                       [StdioTest("", "[] True")])
    assert r.verdicts == [Verdict.PASSED], r
    assert_no_leftovers(workers=1, root=server.proc.pid)


# Mounts under /tmp/acecoder a program may see at most: the holder, the blank directories
# waiting in it, its own, and the last request's (detached while this one starts).
MOUNTS = 1 + _DETACH_TOGETHER + 2
# A POSIX ACL the program sets on its own directory: its named-user entry carries 32 bits of
# its choosing (0x5EC2E7), and an ACL counts in no statvfs figure.
_ACL = "struct.pack('<I', 2) + b''.join(struct.pack('<HHI', *e) for e in [(1, 7, 2**32 - 1), " \
       "(2, 7, 0x5EC2E7), (4, 5, 2**32 - 1), (0x10, 7, 2**32 - 1), (0x20, 0, 2**32 - 1)])"


def _mark_its_directory(leave: bool) -> str:
    """A program that writes what it can on its own directory: an ACL, a mode, times; with
    `leave`, a file and a user attribute too (else it writes a file and deletes it)."""
    return (
        "import os, struct, sys\n"
        "marks = []\n"
        f"for name, value in [('system.posix_acl_access', {_ACL})]"
        + (" + [('user.secret', b's3cret')]" if leave else "") + ":\n"
        "    try:\n        os.setxattr('.', name, value)\n        marks.append(name)\n"
        "    except OSError:\n        pass\n"
        "open('left', 'w').write('x' * 5000)\n"
        + ("" if leave else "os.unlink('left')\n") +
        "os.chmod('.', 0o777)\n"
        "os.utime('.', (123456789, 123456789))\n"
        "print(os.getcwd(), ','.join(marks), file=sys.stderr)\n"
        "def f(x):\n    return x\n"
    )


_REACH = (
    "import os\n"
    "def reach(paths):\n"
    "    out = []\n"
    "    for p in paths:\n"
    "        for name, call in (('stat', os.stat), ('listxattr', os.listxattr),\n"
    "                           ('listdir', os.listdir)):\n"
    "            try:\n                call(p)\n                out.append((name, p))\n"
    "            except OSError:\n                pass\n"
    "        for attr in ('system.posix_acl_access', 'user.secret'):\n"
    "            try:\n                out.append((attr, p, os.getxattr(p, attr).hex()))\n"
    "            except OSError:\n                pass\n"
    "    return out\n"
    "def listable(dirs):\n"
    "    out = []\n"
    "    for d in dirs:\n"
    "        try:\n            out.append((d, os.listdir(d)))\n"
    "        except OSError:\n            pass\n"
    "    return out\n"
)


def test_nothing_an_ended_request_wrote_on_its_directory_reaches_a_later_one(shared) -> None:  # type: ignore[no-untyped-def]
    """Whatever a request writes on its directory itself (an ACL whose entries carry data of
    its choosing and that no statvfs figure counts, a user attribute, a mode, times), no
    later request reaches that directory by any path once the request has ended: not at its
    own load, while the worker may still be detaching the last one, nor later; whether the
    directory was left empty (it waits for its holder's batch) or not (detached alone).
    Parked directories wait where no request's uid can walk; the holders come and go."""
    server, client = shared
    left = []
    for i in range(2 * _DETACH_TOGETHER + 8):  # (35 left empty: two batches and more)
        r = client.execute(_mark_its_directory(leave=i % 8 == 7), ["assert f(1) == 1"])
        assert r.verdicts == [Verdict.PASSED], r
        cwd, marks = r.stderr.split()
        assert "system.posix_acl_access" in marks.split(","), r.stderr  # (else nothing to find)
        left.append(cwd)
    holders = sorted({os.path.dirname(p) for p in left})
    assert len(holders) >= 3, holders  # a new holder after each batch
    rooms = [f"{h}/{_PARKED}" for h in holders]
    paths = left + [f"{os.path.dirname(p)}/{_PARKED}/{os.path.basename(p)}" for p in left]
    probe = _REACH + _PROBE + f"AT_LOAD = reach({paths!r}) + listable({holders + rooms!r})\n"
    r = client.execute(probe + "def f():\n    return AT_LOAD\n", [
        "found = f()\nassert found == [], found",
        f"found = reach({paths!r}) + listable({holders + rooms!r})\nassert found == [], found",
        f"mounts = job_mounts()\nassert mounts <= {MOUNTS}, mounts"])
    assert r.verdicts == [Verdict.PASSED] * 3, [t.error_message for t in r.tests]
    assert_no_leftovers(workers=1, root=server.proc.pid)
