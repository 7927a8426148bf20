"""Choosing and launching the jail a worker lives in: firejail, bubblewrap, or bare namespaces.

All three give the worker new network (loopback only), pid, mount, ipc and uts namespaces and
kill it with its parent; the worker then arranges the same read-only file system view in each
(see `sandbox/fs.py`), drops its children to per-slot unprivileged uids, and installs seccomp.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

JAILS = ("firejail", "bubblewrap", "namespaces")
WORKER_MODULE = "acecoder.executor.sandbox.worker"


def _prefix(jail: str) -> list[str]:
    if jail == "firejail":
        return ["firejail", "--noprofile", "--quiet", "--net=none", "--"]
    if jail == "bubblewrap":
        return [
            "bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--die-with-parent", "--cap-add", "ALL", "--",
        ]
    if jail == "namespaces":
        args = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        if os.geteuid() != 0:
            args += ["--user", "--map-root-user"]
        return args + ["--"]
    raise ValueError(f"unknown jail {jail!r}; choose one of {', '.join(JAILS)} or 'auto'")


@functools.cache
def works(jail: str) -> bool:
    """Whether this jail starts here (by starting one)."""
    tool = {"firejail": "firejail", "bubblewrap": "bwrap", "namespaces": "unshare"}[jail]
    if shutil.which(tool) is None:
        return False
    try:
        proc = subprocess.run(
            [*_prefix(jail), sys.executable, "-S", "-c", "print('ok')"],
            capture_output=True, timeout=20, env=worker_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip().endswith(b"ok")


def choose(preferred: str = "auto") -> str:
    """The jail to use: `preferred` if it works, else the first of JAILS that does."""
    if preferred != "auto":
        if preferred not in JAILS:
            raise ValueError(
                f"unknown jail {preferred!r}; choose one of {', '.join(JAILS)} or 'auto'")
        if not works(preferred):
            raise RuntimeError(f"the {preferred} jail does not start on this machine")
        return preferred
    for jail in JAILS:
        if works(jail):
            return jail
    raise RuntimeError(
        "no jail starts here: install firejail or bubblewrap (apt-get install firejail "
        "bubblewrap), or allow unshare(1) to create namespaces"
    )


def worker_command(jail: str) -> list[str]:
    """The worker's command line: an interpreter without `site` (see sandbox/boot.py)."""
    from .sandbox import boot

    return [*_prefix(jail), sys.executable, "-I", "-S", boot.__file__, WORKER_MODULE,
            _boot_arguments()]


@functools.cache
def _boot_arguments() -> str:
    from .sandbox import boot

    return boot.arguments()


def worker_env() -> dict[str, str]:
    """The scrubbed environment workers (and so programs) start with."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def fs_policy(extra_hide: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(paths to hide, paths to keep visible inside them) for the worker's file system view.

    Hidden: the server's own checkout and working directory, home directories, /run. Kept:
    the Python installation and virtual environment, and the acecoder package itself.
    """
    import acecoder
    import acecoder.executor

    pkg_dirs = [Path(acecoder.__file__).parent, Path(acecoder.executor.__file__).parent]
    hide = {"/root", "/home", "/run", os.getcwd(), *extra_hide}
    for d in pkg_dirs:
        checkout = d.parent
        if (checkout / "pyproject.toml").exists():
            hide.add(str(checkout))
    keep = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
            *(str(d) for d in pkg_dirs)}
    # Never hide a directory that holds the interpreter's own tree wholesale.
    hide = {h for h in hide if h not in ("/", "/usr", "/lib", "/etc")}
    return sorted(hide), sorted(keep)
