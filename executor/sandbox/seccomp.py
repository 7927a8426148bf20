"""A seccomp-BPF filter for the program and test processes, assembled by hand (no libseccomp).

Denied with EPERM: debugging and memory access to other processes, signals by thread id or with
a payload, new sockets, namespaces, mounts, kernel keyrings and modules, io_uring (which would
bypass the filter), kernel objects that would outlive the process (SysV shared memory, message
queues and semaphores, POSIX message queues: what one request left there, the next could read),
widening the CPU affinity the worker pinned (one slot's program could starve another's), and
every other syscall an untrusted program has no business making. Foreign ABIs (i386, x32) are
killed outright. Two forms (see build_filter): per process, where supervisors share the
process's uid (signals only to its own group, which it cannot leave); or one filter inherited
from a zygote, where each child runs under a uid of its own.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import TypedDict

# BPF opcodes.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_SECCOMP_RET_KILL_PROCESS = 0x80000000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_ALLOW = 0x7FFF0000

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# Offsets in struct seccomp_data.
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LO = 16

# Namespace-creating clone flags.
_CLONE_NS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_CLONE_NS |= 0x00000080  # CLONE_NEWTIME

_DENIED_NAMES = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal",
    "socket", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "acct", "swapon", "swapoff", "reboot", "settimeofday", "clock_settime", "adjtimex",
    "open_by_handle_at", "name_to_handle_at", "personality", "syslog", "quotactl",
    "fsopen", "fsmount", "move_mount", "open_tree", "fsconfig", "fspick", "mount_setattr",
    # IPC objects live in the kernel until removed, past the process that made them.
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # CPU placement is the worker's: a slot's processes stay on its core.
    "sched_setaffinity",
)


class _Arch(TypedDict):
    audit: int  # AUDIT_ARCH_* in seccomp_data.arch
    x32_bit: int | None  # the syscall-number bit of the x32 ABI, where there is one
    nr: dict[str, int]  # syscall numbers by name


_ARCHES: dict[str, _Arch] = {
    "x86_64": {
        "audit": 0xC000003E,
        "x32_bit": 0x40000000,
        "nr": {
            "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438,
            "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
            "rt_tgsigqueueinfo": 297, "pidfd_send_signal": 424, "socket": 41, "mount": 165,
            "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
            "clone": 56, "clone3": 435, "kexec_load": 246, "kexec_file_load": 320,
            "init_module": 175, "finit_module": 313, "delete_module": 176, "bpf": 321,
            "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
            "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
            "io_uring_register": 427, "setsid": 112, "setpgid": 109, "acct": 163,
            "swapon": 167, "swapoff": 168, "reboot": 169, "settimeofday": 164,
            "clock_settime": 227, "adjtimex": 159, "open_by_handle_at": 304,
            "name_to_handle_at": 303, "personality": 135, "syslog": 103, "quotactl": 179,
            "fsopen": 430, "fsmount": 432, "move_mount": 429, "open_tree": 428, "fsconfig": 431,
            "fspick": 433, "mount_setattr": 442,
            "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65,
            "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70,
            "msgctl": 71, "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242,
            "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
            "sched_setaffinity": 203,
        },
    },
    "aarch64": {
        "audit": 0xC00000B7,
        "x32_bit": None,
        "nr": {
            "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438,
            "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
            "rt_tgsigqueueinfo": 240, "pidfd_send_signal": 424, "socket": 198, "mount": 40,
            "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268,
            "clone": 220, "clone3": 435, "kexec_load": 104, "kexec_file_load": 294,
            "init_module": 105, "finit_module": 273, "delete_module": 106, "bpf": 280,
            "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218,
            "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
            "io_uring_register": 427, "setsid": 157, "setpgid": 154, "acct": 89,
            "swapon": 224, "swapoff": 225, "reboot": 142, "settimeofday": 170,
            "clock_settime": 112, "adjtimex": 171, "open_by_handle_at": 265,
            "name_to_handle_at": 264, "personality": 92, "syslog": 116, "quotactl": 60,
            "fsopen": 430, "fsmount": 432, "move_mount": 429, "open_tree": 428, "fsconfig": 431,
            "fspick": 433, "mount_setattr": 442,
            "shmget": 194, "shmat": 196, "shmctl": 195, "shmdt": 197, "semget": 190,
            "semop": 193, "semctl": 191, "semtimedop": 192, "msgget": 186, "msgsnd": 189,
            "msgrcv": 188, "msgctl": 187, "mq_open": 180, "mq_unlink": 181,
            "mq_timedsend": 182, "mq_timedreceive": 183, "mq_notify": 184,
            "mq_getsetattr": 185, "sched_setaffinity": 122,
        },
    },
}


def supported() -> bool:
    return os.uname().machine in _ARCHES


class _Asm:
    """Tiny assembler: instructions with symbolic jump targets resolved at the end."""

    def __init__(self) -> None:
        self.ins: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        self.ins.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (code, jt, jf, k) in enumerate(self.ins):
            offs = []
            for target in (jt, jf):
                if isinstance(target, str):
                    delta = self.labels[target] - (i + 1)
                    if not 0 <= delta <= 255:
                        raise ValueError(f"jump to {target} out of range")
                    offs.append(delta)
                else:
                    offs.append(target)
            out += struct.pack("=HBBI", code, offs[0], offs[1], k)
        return bytes(out)


# Denied only where processes share a uid with their supervisors (see build_filter).
_GROUP_NAMES = ("setsid", "setpgid")


def build_filter(own_pid: int | None, machine: str | None = None) -> bytes:
    """The filter program as raw `struct sock_filter` bytes.

    With `own_pid`, for one process: signals only to itself or its group, and no leaving the
    group (so killpg reaches every descendant). With None, the filter a zygote installs once
    and every child inherits, for children that each run under a uid of their own: the kernel
    lets a process signal only processes of its own uid, which are its own request's, and the
    worker finds and kills those by uid, whatever their group."""
    arch = _ARCHES[machine or os.uname().machine]
    nr = arch["nr"]
    eperm = _SECCOMP_RET_ERRNO | errno.EPERM
    a = _Asm()
    a.op(_LD_W_ABS, _OFF_ARCH)
    a.op(_JEQ_K, arch["audit"], 0, "kill")
    a.op(_LD_W_ABS, _OFF_NR)
    if arch["x32_bit"] is not None:
        a.op(_JGE_K, arch["x32_bit"], "kill", 0)
    for name in _DENIED_NAMES + (_GROUP_NAMES if own_pid is not None else ()):
        a.op(_JEQ_K, nr[name], "deny", 0)
    a.op(_JEQ_K, nr["clone3"], "nosys", 0)
    a.op(_JEQ_K, nr["clone"], "clone", 0)
    if own_pid is not None:
        a.op(_JEQ_K, nr["kill"], "signal", 0)
        a.op(_JEQ_K, nr["tgkill"], "signal", 0)
    a.op(_RET_K, _SECCOMP_RET_ALLOW)
    if own_pid is not None:
        # kill(pid, sig) / tgkill(tgid, ...): only the process itself, its group, or 0.
        a.label("signal")
        a.op(_LD_W_ABS, _OFF_ARG0_LO)
        a.op(_JEQ_K, 0, "allow", 0)
        a.op(_JEQ_K, own_pid, "allow", 0)
        a.op(_JEQ_K, -own_pid, "allow", "deny")
    a.label("clone")
    a.op(_LD_W_ABS, _OFF_ARG0_LO)
    a.op(_JSET_K, _CLONE_NS, "deny", "allow")
    a.label("allow")
    a.op(_RET_K, _SECCOMP_RET_ALLOW)
    a.label("deny")
    a.op(_RET_K, eperm)
    a.label("nosys")
    a.op(_RET_K, _SECCOMP_RET_ERRNO | errno.ENOSYS)
    a.label("kill")
    a.op(_RET_K, _SECCOMP_RET_KILL_PROCESS)
    return a.assemble()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Installer:
    """Everything prepared up front, so installing in a freshly forked child touches little
    memory: building a filter costs more than forking on a VM where page faults are dear."""

    _PID_PLACEHOLDER = 0x7FFFFFF0

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = self._libc.prctl
        prog = build_filter(self._PID_PLACEHOLDER)
        self._buf = ctypes.create_string_buffer(prog, len(prog))
        self._fprog = _SockFprog(len(prog) // 8, ctypes.cast(self._buf, ctypes.c_void_p))
        # Byte offsets of the k fields that hold the pid (+pid and -pid).
        self._slots = []
        for i in range(len(prog) // 8):
            (k,) = struct.unpack_from("=I", prog, i * 8 + 4)
            if k == self._PID_PLACEHOLDER:
                self._slots.append((i * 8 + 4, 1))
            elif k == (-self._PID_PLACEHOLDER) & 0xFFFFFFFF:
                self._slots.append((i * 8 + 4, -1))

    def install(self, own_pid: int) -> None:
        for offset, sign in self._slots:
            struct.pack_into("=I", self._buf, offset, (sign * own_pid) & 0xFFFFFFFF)
        if self._prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


_installer: Installer | None = None


def prepare() -> None:
    """Build the filter now (in a long-lived parent), not in each child."""
    global _installer
    if _installer is None and supported():
        _installer = Installer()


def install_shared() -> None:
    """Install the pid-independent filter on the calling process (a zygote), for every child
    it forks to inherit (see build_filter)."""
    if not supported():
        raise OSError(errno.ENOSYS, f"no seccomp filter for {os.uname().machine}")
    prog = build_filter(None)
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def install(own_pid: int | None = None) -> None:
    """Install the filter on the calling process (inherited by everything it starts)."""
    prepare()
    if _installer is None:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {os.uname().machine}")
    _installer.install(own_pid if own_pid is not None else os.getpid())
