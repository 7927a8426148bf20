"""The zygotes' order loop (procs.Zygote): in C where built (as `make` builds it), else the same
orders in Python. Each case runs in a fresh interpreter, as a worker's zygotes do."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from acecoder.executor import jail
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

def spawn_all(z, specs):  # a child of each spec, its report read (it lingers as told)
    pids = []
    for spec in specs:
        r, w = os.pipe()
        pids.append(z.spawn(spec, [w]))
        os.close(w)
        read_all(r)
    return pids

def minflt(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])
"""


def run(script: str, in_c: bool, extra: str = "") -> dict:
    """Run `script` in a fresh interpreter with a worker's environment (a zygote's children,
    and the commands they exec, inherit it: nothing the test process picked up, such as the
    LD_PRELOAD vLLM sets for itself, reaches them)."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + extra + f"IN_C = {in_c}\n" + textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60, env=jail.worker_env())
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
        pids = spawn_all(z, (specs[0], specs[0], specs[1]))
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


PLACED_REPORT = """
import ctypes
from acecoder.executor.sandbox.confine import Limits, confine, pdeathsig, placed
prctl = ctypes.CDLL(None).prctl
LIMITS = Limits(memory_bytes=1 << 32, cpu_seconds=77, file_bytes=1 << 21, open_files=40,
                processes=50)

def report(spec, fds):
    confined_in_c = fds is None
    if fds is not None:  # the Python loop: the same placement, by confine.confine
        confine(uid=spec["uid"], limits=spec["limits"], cwd=spec.get("cwd"),
                fds=placed(spec["place"], fds), env={}, use_seccomp=False)
        from acecoder.executor.sandbox.confine import set_name
        set_name(b"acecoder-spare")
    def target(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
    fds_now = sorted(int(f) for f in os.listdir("/proc/self/fd"))[:-1]  # -1: listdir's
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    state = {
        "in_c": confined_in_c, "own_session": os.getsid(0) == os.getpid(),
        "pdeathsig": pdeathsig(), "fds": fds_now,
        "targets": [target(fd).split(":")[0] if target(fd).startswith(("pipe", "socket"))
                    else target(fd) for fd in fds_now],
        "limits": [resource.getrlimit(r) for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU,
                   resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC,
                   resource.RLIMIT_CORE)],
        "ids": [os.getresuid(), os.getresgid(), os.getgroups()],
        "dumpable": prctl(3, 0, 0, 0, 0), "cwd": os.getcwd(), "comm": comm,
    }
    os.write(0 if spec["place"][0] == 0 else 1, json.dumps(state).encode())
    os._exit(0)
"""


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
@pytest.mark.parametrize("cwd", ["/", None], ids=["root-cwd", "kept-cwd"])
def test_a_spec_places_its_child_s_fds_and_confines_it(in_c: bool, cwd: str | None) -> None:
    """A spec with `place`: the C loop confines its child before it returns to Python (fds
    None), as confine.confine does in the Python loop: fd i is the sent fd place[i] or
    /dev/null, nothing else is open; its own session; the ceilings; its uid with no groups;
    not dumpable; killed with its zygote; "/" as its directory where the spec says so; named
    a spare until it has a job."""
    out = run("""
        spec = {"uid": 61994, "limits": LIMITS, "seccomp": False, "place": (-1, 1, 2, 0),
                "cwd": CWD}
        os.chdir("/usr")
        z = procs.Zygote(report, [spec], in_c=IN_C)
        sock_a, sock_b = __import__("socket").socketpair()
        err_r, err_w = os.pipe()
        r, w = os.pipe()
        z.spawn(z.specs[0], [sock_b.fileno(), w, err_w])
        for fd in (w, err_w):
            os.close(fd)
        sock_b.close()
        print(json.dumps(read_all(r)))
    """.replace("CWD", repr(cwd)), in_c, PLACED_REPORT)
    assert out["in_c"] is in_c
    assert out["own_session"] and out["pdeathsig"] == 9
    assert out["fds"] == [0, 1, 2, 3]
    assert out["targets"] == ["/dev/null", "pipe", "pipe", "socket"], out
    assert out["limits"] == [[1 << 32] * 2, [77] * 2, [1 << 21] * 2, [40] * 2, [50] * 2, [0, 0]]
    assert out["ids"] == [[61994] * 3, [61994] * 3, []]
    assert out["dumpable"] == 0 and out["comm"] == "acecoder-spare"
    assert out["cwd"] == (cwd or "/usr")


def test_a_child_sent_fewer_fds_than_its_spec_places_exits_122() -> None:
    """The C loop never places an fd it was not sent: the child says so and exits 122."""
    out = run("""
        spec = {"uid": None, "limits": LIMITS, "seccomp": False, "place": (0, 1)}
        err_r, err_w = os.pipe()
        saved = os.dup(2)
        os.dup2(err_w, 2)  # the zygote's stderr, where a child that fails to confine says why
        z = procs.Zygote(report, [spec], in_c=True)
        os.dup2(saved, 2)
        os.close(err_w)
        r, w = os.pipe()
        pid = z.spawn(z.specs[0], [w])
        os.close(w)
        status = z.ended(pid)[0]
        z.sock.close()
        os.waitpid(z.pid, 0)
        print(json.dumps({"code": os.WEXITSTATUS(status), "said": os.read(err_r, 4096).decode(),
                          "out": os.read(r, 4096).decode()}))
    """, True, PLACED_REPORT)
    assert out["code"] == 122 and out["out"] == "", out
    assert "fewer fds than its spec places" in out["said"]


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_collect_waits_for_each_killed_child_of_its_specs_only(in_c: bool) -> None:
    """The end of a request: `collect` returns as soon as every child of the given specs has
    exited (each collected, its status kept for a wait order), and never waits for a child of
    another spec; one that does not exit makes it raise TimeoutError after the time given."""
    out = run("""
        import signal
        specs = [{"tag": "a", "code": 0, "linger": 60}, {"tag": "b", "code": 0, "linger": 60}]
        z = procs.Zygote(become, specs, in_c=IN_C)
        pids = spawn_all(z, (specs[0], specs[0], specs[1]))
        for pid in pids[:2]:
            os.kill(pid, signal.SIGKILL)
        t = time.monotonic()
        z.collect([specs[0]], timeout=10)
        took = time.monotonic() - t
        left = [z.reap([specs[0]]), z.reap([specs[1]])]
        signals = [z.ended(pid)[0] & 0x7f for pid in pids[:2]]
        t = time.monotonic()
        try:
            z.collect([specs[1]], timeout=0.3)
            timed_out = False
        except TimeoutError:
            timed_out = True
        waited = time.monotonic() - t
        os.kill(pids[2], signal.SIGKILL)
        print(json.dumps({"took": took, "left": left, "signals": signals,
                          "timed_out": timed_out, "waited": waited}))
    """, in_c)
    assert out["took"] < 5 and out["left"] == [0, 1] and out["signals"] == [9, 9], out
    assert out["timed_out"] and 0.25 < out["waited"] < 5, out


def test_set_name_is_the_process_s_comm() -> None:
    out = run("""
        from acecoder.executor.sandbox import confine
        confine.set_name(b"a-name-longer-than-fifteen-bytes")
        with open("/proc/self/comm") as f:
            print(json.dumps({"comm": f.read().strip(), "in_c": confine._c_set_name is not None}))
    """, True)
    assert out == {"comm": "a-name-longer-t", "in_c": True}


NATIVE = """
from acecoder.executor.sandbox.confine import Limits
from acecoder.executor.sandbox.stdio import sealed_file

CEILING = Limits(memory_bytes=1 << 33, cpu_seconds=77, file_bytes=1 << 21, open_files=40,
                 processes=50)
SPEC = {"uid": 61995, "limits": CEILING, "seccomp": False, "native": True, "place": (1, 2, 3, 0)}

def native(z, argv, *, stdin=b"", env=None, cwd="/", memory=1 << 31, cpu=5, data=False,
           frame=None):
    job_r, job_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdin_fd = sealed_file(stdin)
    pid = z.spawn(z.specs[0], [job_r, stdin_fd, out_w, err_w])
    for fd in (job_r, stdin_fd, out_w, err_w):
        os.close(fd)
    if frame is None:
        frame = procs.native_frame(argv, env or {}, cwd, memory_bytes=memory, cpu_seconds=cpu,
                                   data_memory=data)
    os.write(job_w, frame)
    os.close(job_w)
    out = b""
    while chunk := os.read(out_r, 65536):
        out += chunk
    err = os.read(err_r, 65536)
    status = z.ended(pid)[0]
    return {"pid": pid, "out": out.decode(), "err": err.decode(), "code": os.WEXITSTATUS(status)}

def never(spec, fds):
    os._exit(99)  # a native spec's child never returns to Python
"""

_SHELL_REPORT = (
    'echo "pid $$"; read line; echo "stdin $line"; echo "env $HOME $FOO"; echo "cwd $(pwd)"; '
    'echo fds; ls /proc/$$/fd; echo endfds; cat /proc/$$/stat /proc/$$/status '
    '/proc/$$/limits; echo "to stderr" >&2')


def test_a_native_child_confines_itself_and_becomes_its_command() -> None:
    """A native spec's child (the C loop's become_native) is what confine.confine makes, then
    its job's command itself: the pid the zygote answered is the command's (no Python process
    in between); its own session; fds 0-2 only (the input, its output, its errors); the uid
    with no groups; the ceilings and the job's own memory and CPU limits; the job's
    environment and directory."""
    out = run("""
        z = procs.Zygote(never, [SPEC], in_c=True)
        assert z.runs_native(z.specs[0])
        got = native(z, ["/bin/sh", "-c", SHELL], stdin=b"the input\\n",
                     env={"HOME": "/tmp", "FOO": "bar"}, cwd="/usr")
        print(json.dumps(got))
    """.replace("SHELL", repr(_SHELL_REPORT)), True, NATIVE)
    assert out["code"] == 0 and out["err"] == "to stderr\n", out
    text = out["out"]
    assert f"pid {out['pid']}\n" in text
    assert "stdin the input\n" in text and "env /tmp bar\n" in text and "cwd /usr\n" in text
    assert "\nfds\n0\n1\n2\nendfds\n" in text, text
    stat = text.split(f"{out['pid']} (sh) ", 1)[1].split()
    assert int(stat[3]) == out["pid"]  # the session's id: its own
    assert "\nUid:\t61995\t61995\t61995\t61995\n" in text
    assert "\nGid:\t61995\t61995\t61995\t61995\n" in text
    assert text.split("\nGroups:", 1)[1].split("\n", 1)[0].strip() == ""
    limits = {line[:26].strip(): line[26:].split()[:2] for line in text.splitlines()
              if line.startswith("Max ")}
    assert limits["Max address space"] == [str(1 << 31)] * 2  # the job's, below the ceiling
    assert limits["Max cpu time"] == ["5", "5"]
    assert limits["Max file size"] == [str(1 << 21)] * 2
    assert limits["Max open files"] == ["40", "40"]
    assert limits["Max processes"] == ["50", "50"]
    assert limits["Max core file size"] == ["0", "0"]
    assert limits["Max data size"] == ["unlimited"] * 2


def test_a_native_runtimes_memory_limit_is_its_data_not_its_address_space() -> None:
    out = run("""
        z = procs.Zygote(never, [SPEC], in_c=True)
        got = native(z, ["/bin/cat", "/proc/self/limits"], memory=1 << 28, data=True)
        print(json.dumps(got))
    """, True, NATIVE)
    limits = {line[:26].strip(): line[26:].split()[:2] for line in out["out"].splitlines()
              if line.startswith("Max ")}
    assert limits["Max data size"] == [str(1 << 28)] * 2
    assert limits["Max address space"] == [str(1 << 33)] * 2  # the ceiling only


def test_a_native_child_that_cannot_start_says_why_and_exits_122() -> None:
    """A command that does not exist, and a job that is not a native frame (a worker's
    pickle, cut short, or a lying length), end the child with program.EXIT_LAUNCH and a line
    on its stderr; the zygote serves on."""
    out = run("""
        z = procs.Zygote(never, [SPEC], in_c=True)
        good = procs.native_frame(["/bin/true"], {}, "/", memory_bytes=1 << 30, cpu_seconds=5,
                                  data_memory=False)
        runs = [native(z, ["/nonexistent/program"]),
                native(z, [], frame=b"\\x80\\x05" + good[2:]),
                native(z, [], frame=good[:20]),
                native(z, [], frame=good[:4] + (1 << 30).to_bytes(4, "little") + good[8:]),
                native(z, ["/bin/true"])]
        print(json.dumps(runs))
    """, True, NATIVE)
    from acecoder.executor.sandbox.program import EXIT_LAUNCH

    assert [r["code"] for r in out] == [EXIT_LAUNCH] * 4 + [0]
    assert "/nonexistent/program: No such file or directory" in out[0]["err"]
    assert all("malformed job" in r["err"] or "reading the job" in r["err"] for r in out[1:4])


def test_a_native_child_dies_with_its_zygote() -> None:
    out = run("""
        import signal
        z = procs.Zygote(never, [SPEC], in_c=True)
        job_r, job_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        pid = z.spawn(z.specs[0], [job_r, null, os.open(os.devnull, os.O_WRONLY),
                                   os.open(os.devnull, os.O_WRONLY)])
        os.write(job_w, procs.native_frame(["/bin/sleep", "60"], {}, "/",
                                           memory_bytes=1 << 30, cpu_seconds=5,
                                           data_memory=False))
        os.close(job_w)
        time.sleep(0.3)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            running = f.read().split(b"\\0")[0].decode()
        os.kill(z.pid, signal.SIGKILL)
        os.waitpid(z.pid, 0)
        gone = False
        for _ in range(200):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    gone = f.read().rsplit(")", 1)[1].split()[0] in "ZX"
            except FileNotFoundError:
                gone = True
            if gone:
                break
            time.sleep(0.01)
        print(json.dumps({"running": running, "gone": gone}))
    """, True, NATIVE)
    assert out == {"running": "/bin/sleep", "gone": True}


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_which_specs_are_native(in_c: bool) -> None:
    """Only the C loop execs from a native spec, and only one that needs no seccomp filter of
    its own (a child installs that itself, in Python)."""
    out = run("""
        specs = [SPEC, {**SPEC, "native": False}, {**SPEC, "seccomp": True}]
        z = procs.Zygote(never, specs, in_c=IN_C)
        print(json.dumps([z.runs_native(s) for s in specs] + [sorted(procs.natives(specs))]))
    """, in_c, NATIVE)
    assert out == [in_c, False, False, [0]]


def test_a_native_job_holds_no_nul_and_a_command() -> None:
    frame = procs.native_frame(["/bin/echo", "a b"], {"K": "v=w"}, "/tmp", memory_bytes=5,
                               cpu_seconds=6, data_memory=True)
    assert frame.endswith(b"/tmp\0/bin/echo\0a b\0K=v=w\0")
    for argv, env, cwd in ([], {}, "/"), (["/bin/echo", "a\0b"], {}, "/"), \
            (["/bin/echo"], {"K=": "v"}, "/"), (["/bin/echo"], {"": "v"}, "/"), \
            (["/bin/echo"], {}, "/\0"):
        with pytest.raises(ValueError):
            procs.native_frame(argv, env, cwd, memory_bytes=1, cpu_seconds=1, data_memory=False)


@pytest.mark.parametrize("in_c", [True, False], ids=["c", "python"])
def test_a_spawn_names_one_of_the_zygote_s_own_specs(in_c: bool) -> None:
    """A spec the zygote was not made with (even an equal copy) is refused before any order
    is sent; the zygote serves on."""
    out = run("""
        specs = [{"tag": "a", "code": 4}]
        z = procs.Zygote(become, specs, in_c=IN_C)
        try:
            z.spawn(dict(specs[0]), [])
            refused = False
        except ValueError:
            refused = True
        r, w = os.pipe()
        pid = z.spawn(specs[0], [w])
        os.close(w)
        read_all(r)
        print(json.dumps([refused, os.WEXITSTATUS(z.ended(pid)[0])]))
    """, in_c)
    assert out == [True, 4]
