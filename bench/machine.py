"""One line naming the machine and commit a benchmark ran on, for every bench's table."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        commit = "?"
    cpu = "?"
    with contextlib.suppress(OSError):
        m = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = m.group(1) if m else cpu
    return (f"{platform.node()} | {os.cpu_count()} cores | {cpu} | Python "
            f"{platform.python_version()} | commit {commit}")
