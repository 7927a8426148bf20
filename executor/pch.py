"""A precompiled `<bits/stdc++.h>` for C++ compiles.

Most competitive-programming C++ (and most C++ a code model writes for it) starts with
`#include <bits/stdc++.h>`, the whole standard library: parsing it is about two thirds of such a
compile (0.9 s -> 0.3 s on the development VM). GCC looks for `bits/stdc++.h.gch` in each
include directory before the header itself, and uses it only when it was built by the same
compiler with compatible flags (else it reads the header, as without it), so a compile given
`-I <dir>` gets the same program either way, faster.

The header is built once per toolchain and flags, by the executor's own (root) process from the
system's headers alone, into the Python installation's `share/acecoder/pch/` (which every jail
keeps visible at the same path), and used only while it and every directory above it up to that
root are owned by root and writable by no one else: no program or compiler run by a request,
which runs as another uid, can change what a later request's compile reads. An executor that does
not run as root builds and uses none.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from acecoder.executor import languages

log = logging.getLogger(__name__)

HEADER = "bits/stdc++.h"
_lock = threading.Lock()
_started = False


def _flags(lang: languages.Language) -> list[str]:
    """The compile flags a precompiled header must share with the compiles that use it."""
    drop = {"-o", "{exe}", "{src}", *lang.static}
    return [a for a in lang.compile[1:] if a not in drop]


def include_dir(lang: languages.Language | None = None) -> Path:
    """Where `lang`'s (C++'s) precompiled header lives: named by its toolchain and flags, so a
    new compiler or other flags get a header of their own."""
    lang = lang or languages.LANGUAGES["cpp"]
    found = languages.toolchain(lang.name)
    key = repr((found, _flags(lang), sys.implementation.cache_tag))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(sys.prefix) / "share" / "acecoder" / "pch" / f"{lang.name}-{digest}"


def _trusted(path: Path, root: Path) -> bool:
    """`path` and each directory from it up to `root` exist, belong to root and are writable
    by no other user."""
    while True:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) \
                or stat.S_ISLNK(st.st_mode):
            return False
        if path == root or path.parent == path:
            return True
        path = path.parent


# Beside the precompiled header, a header of the same name that includes the system's: GCC
# resolves a second `#include <bits/stdc++.h>` to the directory the first one came from, where
# the precompiled one no longer applies, and would find no header there.
_NEXT = f"#include_next <{HEADER}>\n"


def ready(lang: languages.Language | None = None) -> str | None:
    """The directory to put on a C++ compile's include path, where the header is built and
    trusted (see the module docstring); else None."""
    if os.geteuid() != 0:
        return None
    d = include_dir(lang)
    root = Path(sys.prefix)
    ok = _trusted(d / (HEADER + ".gch"), root) and _trusted(d / HEADER, root)
    return str(d) if ok else None


def build(lang: languages.Language | None = None) -> bool:
    """Build the header if it is not there yet (as root only); True when it is ready."""
    lang = lang or languages.LANGUAGES["cpp"]
    if ready(lang) is not None:
        return True
    found = languages.toolchain(lang.name)
    if os.geteuid() != 0 or found is None:
        return False
    d = include_dir(lang)
    target = d / (HEADER + ".gch")
    try:
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            wrapper = Path(work) / "stdc++.h"
            wrapper.write_text(f"#include <{HEADER}>\n")
            fd, part = tempfile.mkstemp(dir=target.parent, prefix=".building-")
            os.close(fd)
            try:
                done = subprocess.run(
                    [found[0], *_flags(lang), "-x", "c++-header", str(wrapper), "-o", part],
                    capture_output=True, timeout=600, check=False, cwd=work,
                    env={"PATH": languages.SYSTEM_PATH})
                if done.returncode != 0:
                    log.warning("no precompiled %s: %s", HEADER, done.stderr[-500:].decode(
                        errors="replace"))
                    return False
                os.chmod(part, 0o644)
                _write_atomically(d / HEADER, _NEXT)
                os.replace(part, target)
            finally:
                if os.path.exists(part):
                    os.unlink(part)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("no precompiled %s: %s", HEADER, exc)
        return False
    return ready(lang) is not None


def _write_atomically(path: Path, text: str) -> None:
    fd, part = tempfile.mkstemp(dir=path.parent, prefix=".building-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(part, 0o644)
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.unlink(part)


def build_in_background() -> None:
    """Start `build` once per process, in a thread (a C++ compile before it is done reads the
    header itself)."""
    global _started
    with _lock:
        if _started or os.geteuid() != 0:
            return
        _started = True
    threading.Thread(target=build, name="precompiled-header", daemon=True).start()


if __name__ == "__main__":  # an image's build step: python -m acecoder.executor.pch
    ok = build()
    print(f"{ready() or 'no precompiled header'}")
    sys.exit(0 if ok else 1)
