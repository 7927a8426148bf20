"""The sweep between requests (procs.sweep): one `kill(-1)` per uid, with credentials that
reach that uid's processes and nothing else. Run in a pid namespace of its own (as a worker
is), so that `kill(-1)` cannot reach a process of this machine."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import pytest

from acecoder.executor.sandbox.procs import check_sweep

TARGET, VIA, BYSTANDER = 61990, 61991, 61992

PRELUDE = f"""
import json, os, select, signal, sys, threading, time
from acecoder.executor.sandbox import procs
TARGET, VIA, BYSTANDER = {TARGET}, {VIA}, {BYSTANDER}

def become(uid):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)

def reap():  # we are pid 1 here: orphans are ours
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.01)

def alive(pid):
    with open(f"/proc/{{pid}}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
"""


def in_own_pid_namespace(script: str) -> dict:
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c",
         PRELUDE + textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_sweep_ends_every_process_of_the_uid_however_fast_it_forks() -> None:
    """Chains of processes that each fork their successor and exit at once (some leave their
    session too) stay ahead of any reading of /proc. One sweep ends them all: the pipe every
    one of them holds is at its end without a second kill. Processes of another uid and
    root's live on, and the caller is root again."""
    out = in_own_pid_namespace("""
        r, w = os.pipe()
        bystanders = []
        for uid in (BYSTANDER, None):
            pid = os.fork()
            if pid == 0:
                os.close(r)
                os.close(w)
                if uid:
                    become(uid)
                time.sleep(60)
                os._exit(0)
            bystanders.append(pid)
        for i in range(6):
            if os.fork() == 0:
                os.close(r)
                become(TARGET)
                while True:
                    try:
                        if os.fork():
                            os._exit(0)
                        if i % 2:
                            os.setsid()
                    except OSError:
                        pass
        os.close(w)
        threading.Thread(target=reap, daemon=True).start()
        time.sleep(0.3)
        hops = int(open("/proc/loadavg").read().split()[-1])  # the last pid handed out
        procs.sweep([TARGET], via=VIA)
        creds = os.getresuid()
        ended = bool(select.select([r], [], [], 5)[0]) and os.read(r, 1) == b""
        print(json.dumps({"ended": ended, "hops": hops, "creds": creds,
                          "bystanders": [alive(p) for p in bystanders]}))
    """)
    assert out["hops"] > 100  # the chains were hopping when the sweep came
    assert out["ended"]
    assert out["creds"] == [0, 0, 0]
    assert out["bystanders"] == [True, True]


def test_a_sweep_ends_a_process_whose_leader_exited_alone() -> None:
    """A leader that ends alone with the `exit` system call (not `exit_group`) is a zombie
    while the process lives on in its other threads; its zombie leader is on the process list
    a sweep walks, and the signal goes to the whole group: the thread holding the pipe ends."""
    out = in_own_pid_namespace("""
        import ctypes
        r, w = os.pipe()
        if os.fork() == 0:
            os.close(r)
            become(TARGET)
            os.setsid()
            threading.Thread(target=time.sleep, args=(60,)).start()
            ctypes.CDLL(None).syscall({"x86_64": 60, "aarch64": 93}[os.uname().machine], 0)
        os.close(w)
        threading.Thread(target=reap, daemon=True).start()
        time.sleep(0.2)
        held = not select.select([r], [], [], 0)[0]  # the thread still holds the pipe
        procs.sweep([TARGET], via=VIA)
        ended = bool(select.select([r], [], [], 5)[0]) and os.read(r, 1) == b""
        print(json.dumps({"held": held, "ended": ended}))
    """)
    assert out == {"held": True, "ended": True}


def test_a_process_of_the_target_uid_cannot_signal_a_sweeper() -> None:
    """While it sweeps, the worker's real uid is one nothing runs as and its saved uid is 0: a
    process of the swept uid can signal neither it directly nor with its own `kill(-1)`."""
    out = in_own_pid_namespace("""
        ready_r, ready_w = os.pipe()
        sweeper = os.fork()
        if sweeper == 0:
            os.setresuid(VIA, TARGET, 0)  # a sweep's credentials, held
            os.write(ready_w, b"x")
            time.sleep(60)
            os._exit(0)
        os.read(ready_r, 1)
        res_r, res_w = os.pipe()
        attacker = os.fork()
        if attacker == 0:
            become(TARGET)
            try:
                os.kill(sweeper, signal.SIGKILL)
                direct = "delivered"
            except PermissionError:
                direct = "denied"
            os.kill(-1, signal.SIGKILL)  # everything it may signal, but itself
            os.write(res_w, direct.encode())
            os._exit(0)
        direct = os.read(res_r, 64).decode()
        os.waitpid(attacker, 0)
        time.sleep(0.1)
        print(json.dumps({"direct": direct, "alive": alive(sweeper)}))
    """)
    assert out == {"direct": "denied", "alive": True}


def test_a_sweep_keeps_the_callers_parent_death_signal() -> None:
    """The kernel clears the parent-death signal whenever the effective uid changes; a worker
    whose jail set one (to die with it) still has it after a sweep."""
    out = in_own_pid_namespace("""
        from acecoder.executor.sandbox import confine
        confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGTERM)
        procs.sweep([TARGET], via=VIA)
        kept = confine.pdeathsig()
        os.setresuid(VIA, TARGET, 0)  # the same change of credentials, by hand
        os.setresuid(0, 0, 0)
        print(json.dumps({"kept": kept, "by_hand": confine.pdeathsig()}))
    """)
    assert out == {"kept": 15, "by_hand": 0}


_PR_SET_SECUREBITS = 28
_SECBIT_NO_SETUID_FIXUP = 1 << 2


@pytest.mark.parametrize("securebits", [0, _SECBIT_NO_SETUID_FIXUP])
def test_a_sweep_that_would_keep_capabilities_is_refused(securebits: int) -> None:
    """With SECBIT_NO_SETUID_FIXUP the kernel keeps capabilities when the effective uid
    changes; with CAP_KILL a sweep would reach every process, the worker's own among them."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            if ctypes.CDLL(None).prctl(_PR_SET_SECUREBITS, securebits, 0, 0, 0) == 0:
                try:
                    check_sweep(TARGET, VIA)
                    code = 0
                except RuntimeError as exc:
                    code = 1 if "SECBIT_NO_SETUID_FIXUP" in str(exc) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == (1 if securebits else 0)


def test_what_a_request_leaves_is_seen_until_it_is_reaped() -> None:
    """The two ways the worker sees leftovers of a request after its sweep agree: its own
    children (an orphan is reparented to it: here pid 1) and a read of the uids in /proc.
    Both see a daemon whose parent is gone, and neither sees anything once it is reaped."""
    out = in_own_pid_namespace("""
        from acecoder.executor.sandbox.procs import any_left, children
        r, w = os.pipe()
        parent = os.fork()
        if parent == 0:
            become(TARGET)
            if os.fork() == 0:
                os.setsid()
                os.close(r)
                os.write(w, b"x")
                time.sleep(60)
                os._exit(0)
            os._exit(0)
        os.waitpid(parent, 0)
        os.read(r, 1)  # the daemon runs, an orphan: ours now
        before = {"children": len(children(os.getpid())), "left": any_left([TARGET]),
                  "other": any_left([BYSTANDER])}
        procs.sweep([TARGET], via=VIA)
        os.waitpid(-1, 0)
        print(json.dumps({**before, "after": [sorted(children(os.getpid())),
                                              any_left([TARGET])]}))
    """)
    assert out == {"children": 1, "left": True, "other": False, "after": [[], False]}


def test_children_are_not_read_from_another_namespace_s_proc() -> None:
    """In a pid namespace whose /proc is still the host's, /proc's numbers are not the
    caller's: `children` says it cannot tell (the worker then reads the uids instead)."""
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c",
         "import os; from acecoder.executor.sandbox.procs import children; "
         "print(os.getpid(), children(os.getpid()))"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "None"]
