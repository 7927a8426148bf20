"""The zygotes' order loop (procs.Zygote): in C where built (as `make` builds it), else the same
orders in Python. Each case runs in a fresh interpreter, as a worker's zygotes do."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from acecoder.executor.sandbox import procs

PRELUDE = """
import json, os, random, resource, sys, time
from acecoder.executor.sandbox import procs

def become(spec, fds):
    (out,) = fds
    os.write(out, json.dumps({"tag": spec["tag"], "random": random.random()}).encode())
    os.close(out)
    time.sleep(spec.get("linger", 0))
    os._exit(spec["code"])

def read_all(fd):
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    os.close(fd)
    return json.loads(data)

def minflt(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])
"""


def run(script: str, in_c: bool) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + f"IN_C = {in_c}\n" + textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_c_loop_is_built() -> None:
    """`make` builds the extension: a checkout whose tests pass runs the C loop."""
    assert procs.c_serve is not None


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_a_zygote_forks_each_child_with_its_spec_and_fds_and_reports_its_end(in_c: bool) -> None:
    out = run("""
        specs = [{"tag": "a", "code": 3}, {"tag": "b", "code": 7}]
        z = procs.Zygote(become, specs, in_c=IN_C)
        seen = []
        for spec in (specs[1], specs[0], specs[1]):
            r, w = os.pipe()
            pid = z.spawn(spec, [w])
            os.close(w)  # the zygote closed its copy: the child holds the only one
            got = read_all(r)
            status, rss, cpu = z.ended(pid)
            seen.append({"tag": got["tag"], "random": got["random"],
                         "code": os.WEXITSTATUS(status), "rss": rss, "cpu": cpu})
        z.reap()
        print(json.dumps(seen))
    """, in_c)
    assert [s["tag"] for s in out] == ["b", "a", "b"]
    assert [s["code"] for s in out] == [7, 3, 7]
    assert all(s["rss"] > 1000 and s["cpu"] >= 0 for s in out)
    assert len({s["random"] for s in out}) == 3  # every child reseeded: none draws another's


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_a_child_that_ended_unasked_is_still_reported(in_c: bool) -> None:
    """A reap order collects exited children; their status is kept for a later wait order,
    and waiting for a pid that is not a child answers at once."""
    out = run("""
        z = procs.Zygote(become, [{"tag": "a", "code": 5}], in_c=IN_C)
        r, w = os.pipe()
        pid = z.spawn(z.specs[0], [w])
        os.close(w)
        read_all(r)
        time.sleep(0.2)
        z.reap()
        status, _, _ = z.ended(pid)
        print(json.dumps({"code": os.WEXITSTATUS(status), "stranger": z.ended(1)}))
    """, in_c)
    assert out == {"code": 5, "stranger": [0, 0, 0.0]}


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_a_failed_fork_is_an_error_of_that_spawn_only(in_c: bool) -> None:
    """Under a process limit the zygote cannot fork: the spawn raises, the zygote lives on
    (it never answers with a pid the worker would signal)."""
    out = run("""
        uid = 61993 + IN_C  # a uid of its own for each case: no process of another counts
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (2, 2))  # this process and the zygote
        z = procs.Zygote(become, [{"tag": "a", "code": 0}], in_c=IN_C)
        r, w = os.pipe()
        try:
            z.spawn(z.specs[0], [w])
            failed = False
        except OSError:
            failed = True
        z.reap()  # still answers
        print(json.dumps({"failed": failed, "alive": os.waitpid(z.pid, os.WNOHANG) == (0, 0)}))
    """, in_c)
    assert out == {"failed": True, "alive": True}


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_a_malformed_order_ends_the_zygote(in_c: bool) -> None:
    out = run("""
        import struct
        z = procs.Zygote(become, [{"tag": "a", "code": 0}], in_c=IN_C)
        z.sock.sendall(struct.pack("=ii", ord("X"), 0))
        _, status = os.waitpid(z.pid, 0)
        z2 = procs.Zygote(become, [{"tag": "a", "code": 0}], in_c=IN_C)
        z2.sock.close()  # the worker is gone
        _, status2 = os.waitpid(z2.pid, 0)
        print(json.dumps({"ended": [os.WIFEXITED(status), os.WIFEXITED(status2)]}))
    """, in_c)
    assert out == {"ended": [True, True]}


def test_the_c_loop_writes_to_almost_none_of_its_pages_after_a_fork() -> None:
    """The point of the C loop: while a child shares the zygote's pages, every page the zygote
    writes is copied. Twenty children alive at once: the zygote took a handful of page faults
    for each (its stack and a few static bytes), where the Python loop takes about a hundred."""
    counts = {}
    for in_c in (True, False):
        counts[in_c] = run("""
            z = procs.Zygote(become, [{"tag": "a", "code": 0, "linger": 30}], in_c=IN_C)
            z.reap()
            before = minflt(z.pid)
            pids = []
            for _ in range(20):
                r, w = os.pipe()
                pids.append(z.spawn(z.specs[0], [w]))
                os.close(w)
                read_all(r)
            faults = (minflt(z.pid) - before) / 20
            for pid in pids:
                os.kill(pid, 9)
            print(json.dumps({"faults": faults}))
        """, in_c)["faults"]
    assert counts[True] <= 10, counts
    assert counts[False] > 3 * counts[True], counts


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_a_zygote_counts_its_children_of_each_kind_until_it_collects_them(in_c: bool) -> None:
    """What the worker waits on at the end of a request: how many children of the request's
    kinds the zygote has not collected (a killed child counts until it is reaped)."""
    out = run("""
        import signal
        specs = [{"tag": "a", "code": 0, "linger": 60}, {"tag": "b", "code": 0, "linger": 60}]
        z = procs.Zygote(become, specs, in_c=IN_C)
        pids = []
        for spec in (specs[0], specs[0], specs[1]):
            r, w = os.pipe()
            pids.append(z.spawn(spec, [w]))
            os.close(w)
            read_all(r)
        counts = [z.reap([specs[0]]), z.reap([specs[1]]), z.reap()]
        for pid in pids[:2]:
            os.kill(pid, signal.SIGKILL)
        while z.reap([specs[0]]):
            time.sleep(0.01)
        counts += [z.reap([specs[0]]), z.reap()]
        os.kill(pids[2], signal.SIGKILL)
        print(json.dumps(counts + [z.ended(pids[2])[0] & 0x7f, z.reap()]))
    """, in_c)
    assert out == [2, 1, 3, 0, 1, 9, 0]


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_a_child_is_confined_and_killed_with_its_zygote(in_c: bool) -> None:
    """confine.confine in a zygote's child: its own session, the fds it was given at 0, 1, ...
    and nothing else, the rlimits, its uid with no groups, not dumpable, and the parent-death
    signal, which the kernel clears when the uid changes (so it is asked for after)."""
    out = run("""
        import ctypes, fcntl  # before the uid drop: the child may not read the interpreter's tree
        from acecoder.executor.sandbox.confine import Limits, confine, pdeathsig
        prctl = ctypes.CDLL(None).prctl

        def report(spec, fds):
            confine(uid=61995, limits=spec["limits"], cwd="/", fds=fds, env={"HOME": "/"},
                    use_seccomp=False)
            state = {
                "own_session": os.getsid(0) == os.getpid(), "pdeathsig": pdeathsig(),
                "fds": sorted(int(f) for f in os.listdir("/proc/self/fd"))[:-1],  # -1: listdir's
                "limits": [resource.getrlimit(r) for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU,
                           resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC,
                           resource.RLIMIT_CORE)],
                "ids": [os.getresuid(), os.getresgid(), os.getgroups()],
                "dumpable": prctl(3, 0, 0, 0, 0), "cwd": os.getcwd(), "home": os.environ["HOME"],
            }
            os.write(1, json.dumps(state).encode())
            os._exit(0)

        limits = Limits(memory_bytes=1 << 32, cpu_seconds=77, file_bytes=1 << 21, open_files=40,
                        processes=50)
        z = procs.Zygote(report, [{"limits": limits}], in_c=IN_C)
        null = os.open(os.devnull, os.O_RDONLY)
        r, w = os.pipe()
        z.spawn(z.specs[0], [null, w])
        os.close(w)
        print(json.dumps(read_all(r)))
    """, in_c)
    assert out["own_session"] and out["pdeathsig"] == 9
    assert out["fds"] == [0, 1]
    assert out["limits"] == [[1 << 32] * 2, [77] * 2, [1 << 21] * 2, [40] * 2, [50] * 2, [0, 0]]
    assert out["ids"] == [[61995] * 3, [61995] * 3, []]
    assert out["dumpable"] == 0 and out["cwd"] == "/" and out["home"] == "/"
