"""The languages the executor runs, with SandboxFusion's names, and which of them this machine
has a toolchain for.

A toolchain counts only when it comes from the system's own directories (what the system
package manager installs, and the executor image): the sandbox exposes those read-only to every
program uid, while a per-user install (rustup under a home directory) is hidden from it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from acecoder.errors import FailedPrecondition, InvalidArgument

# Where a toolchain may come from (see the module docstring).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, kw_only=True)
class Language:
    name: str
    """SandboxFusion's name for it."""
    source: str
    """The file the program is written to, in its own directory."""
    compile: tuple[str, ...] = ()
    """The compiler's argv (empty: interpreted). {src} is the source file, {exe} the output."""
    run: tuple[str, ...]
    """The argv of one run. {src}, {exe}; {mem} is the memory limit in MiB."""
    tool: str
    """The executable that must be installed (also asked for its version)."""
    version_args: tuple[str, ...] = ("--version",)
    package: str
    """What to install when it is missing (Debian package names, as the executor image has)."""
    data_memory: bool = False
    """The runtime reserves far more address space than it uses (the JVM, V8, Go): its memory
    limit is RLIMIT_DATA (memory really allocated) instead of RLIMIT_AS."""
    memory_exit: int | None = None
    """An exit status by which the runtime itself says it ran out of memory."""
    runtime_mb: int = 0
    """Resident memory the runtime itself holds beyond the program's (the JVM's code cache and
    metadata, V8's isolate): a run may hold the memory limit plus this, measured as its peak
    resident set."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment of the compiler and of each run ({dir}: the program's directory)."""
    static: tuple[str, ...] = ()
    """Compiler flags that link the program statically, used where this machine's toolchain
    can (see `compile_template`): a run then loads no shared library (a C++ program's start
    costs about half as much), as ICPC's and Kattis's judges build C and C++. With gold, whose
    static link costs ~3 ms more than a dynamic one where the default linker's costs ~26."""


LANGUAGES: dict[str, Language] = {lang.name: lang for lang in (
    Language(name="python", source="main.py", run=(), tool=sys.executable,
             version_args=("-VV",), package="python3"),
    Language(name="c", source="main.c", tool="gcc", package="gcc",
             compile=("gcc", "-O2", "-std=gnu11", "-pipe", "-o", "{exe}", "{src}", "-lm"),
             run=("{exe}",), static=("-static", "-fuse-ld=gold")),
    Language(name="cpp", source="main.cpp", tool="g++", package="g++",
             compile=("g++", "-O2", "-std=c++17", "-pipe", "-o", "{exe}", "{src}"),
             run=("{exe}",), static=("-static", "-fuse-ld=gold")),
    # The JVM and its compiler: the serial collector and one compiler thread keep its thread
    # count (each counts against the program's process limit) small; the heap is the limit.
    Language(name="java", source="Main.java", tool="javac", version_args=("-version",),
             package="default-jdk-headless",
             compile=("javac", "-J-Xmx512m", "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1",
                      "-encoding", "UTF-8", "-d", "{dir}", "{src}"),
             run=("java", "-Xmx{mem}m", "-Xss64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                  "-XX:+ExitOnOutOfMemoryError", "-Xshare:auto", "-cp", "{dir}", "Main"),
             data_memory=True, memory_exit=3, runtime_mb=256),
    Language(name="nodejs", source="main.js", tool="node", package="nodejs",
             run=("node", "--max-old-space-size={mem}", "--stack-size=65500", "{src}"),
             data_memory=True, runtime_mb=128),
    Language(name="rust", source="main.rs", tool="rustc", package="rustc",
             compile=("rustc", "-O", "--edition=2021", "-o", "{exe}", "{src}"),
             run=("{exe}",)),
    Language(name="go", source="main.go", tool="go", version_args=("version",),
             package="golang-go",
             compile=("go", "build", "-o", "{exe}", "{src}"), run=("{exe}",),
             env=(("GOCACHE", "{dir}/.gocache"), ("GOPATH", "{dir}/.gopath"),
                  ("GO111MODULE", "off")),
             data_memory=True),
)}


@functools.cache
def toolchain(name: str) -> tuple[str, str] | None:
    """(the tool's absolute path, its version line) if this machine has `name`'s toolchain in
    the system's directories, else None."""
    lang = LANGUAGES[name]
    if name == "python":
        return sys.executable, "Python " + sys.version.split()[0]
    path = shutil.which(lang.tool, path=SYSTEM_PATH)
    if path is None:
        return None
    try:
        out = subprocess.run([path, *lang.version_args], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (out.stdout + out.stderr).strip().splitlines()
    return path, (lines[0].strip() if lines else lang.tool)


def build_key(lang: Language, source: str) -> str:
    """What a build is a function of: the language, its toolchain, its compile flags and the
    exact source (the worker's and the pool's caches of builds are keyed by it)."""
    text = repr((lang.name, compile_template(lang), toolchain(lang.name), lang.source))
    return hashlib.sha256((text + "\0" + source).encode("utf-8", errors="surrogateescape")
                          ).hexdigest()


def compile_template(lang: Language) -> tuple[str, ...]:
    """The compiler's argv template: `lang.compile`, linking statically where `links_static`."""
    return lang.compile + (lang.static if lang.static and links_static(lang.name) else ())


@functools.cache
def links_static(name: str) -> bool:
    """Whether this machine's toolchain for `name` links a program statically (Debian's g++
    brings libc.a and libstdc++.a; some systems package them apart): tried once, on a program
    that does nothing, in a directory of its own."""
    lang = LANGUAGES[name]
    if not lang.static or toolchain(name) is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, lang.source), "w") as f:
            f.write("int main(void) { return 0; }\n")
        argv = command(lang, lang.compile + lang.static, directory=d, memory_mb=0)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=120, check=False,
                                  env={"PATH": SYSTEM_PATH}, cwd=d)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0 and os.path.exists(os.path.join(d, "main"))


def available() -> dict[str, str]:
    """Each language this machine runs, with its toolchain's version."""
    return {name: found[1] for name in LANGUAGES if (found := toolchain(name)) is not None}


def check(name: str, *, stdio: bool, where: str = "") -> str:
    """The request's language, refused with a message that says what to do: unknown names are
    InvalidArgument, a missing toolchain FailedPrecondition."""
    lang = LANGUAGES.get(name)
    if lang is None:
        raise InvalidArgument(f"{where}unknown language {name!r}: use one of "
                              f"{', '.join(LANGUAGES)}")
    if name != "python" and not stdio:
        raise InvalidArgument(f"{where}{name} programs take stdio tests "
                              "({\"input\", \"output\"}); test statements and call tests are "
                              "Python's")
    if toolchain(name) is None:
        raise FailedPrecondition(
            f"{where}this executor has no {name} toolchain ({lang.tool} is not installed in "
            f"the system's directories): install the {lang.package!r} package (the executor "
            f"image has it), or send one of: {', '.join(available())}")
    return name


def command(lang: Language, template: tuple[str, ...], *, directory: str,
            memory_mb: int) -> list[str]:
    """One of `lang`'s commands with its placeholders filled, the executable as an absolute
    path from the system's directories (the sandbox's processes get no PATH)."""
    out = [part.format(dir=directory, src=f"{directory}/{lang.source}",
                       exe=f"{directory}/main", mem=memory_mb) for part in template]
    if out and not out[0].startswith("/"):
        out[0] = _which(out[0])
    return out


@functools.cache
def _which(tool: str) -> str:
    """A tool's absolute path in the system's directories (looked up once: every test's run
    names it)."""
    return shutil.which(tool, path=SYSTEM_PATH) or tool


def environment(lang: Language, directory: str) -> dict[str, str]:
    """What the compiler and each run find in their environment besides HOME and TMPDIR."""
    return {"PATH": SYSTEM_PATH, **{k: v.format(dir=directory) for k, v in lang.env}}
