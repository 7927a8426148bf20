"""The precompiled <bits/stdc++.h> (executor/pch.py): built once by root from the system's
headers, used by g++ for the same flags, and trusted only while no other user can change it or
a directory above it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from acecoder.executor import languages, pch
from acecoder.executor.sandbox import stdio

CPP = languages.LANGUAGES["cpp"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A header built under an installation of its own (a module-wide sys.prefix)."""
    prefix = tmp_path_factory.mktemp("prefix")
    os.chmod(prefix, 0o755)
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "prefix", str(prefix))
    assert pch.ready() is None  # nothing there yet
    assert pch.build()
    yield pch.include_dir()
    mp.undo()


def test_the_header_is_built_by_root_for_the_compiles_flags(built: Path) -> None:
    gch = built / "bits" / "stdc++.h.gch"
    st = gch.stat()
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o644
    assert pch.ready() == str(built)
    assert pch._flags(CPP) == ["-O2", "-std=c++17", "-pipe"]
    assert not list(gch.parent.glob(".building-*"))  # built aside, then moved in place
    nxt = built / "bits" / "stdc++.h"
    assert nxt.read_text() == "#include_next <bits/stdc++.h>\n"
    assert nxt.stat().st_uid == 0 and nxt.stat().st_mode & 0o777 == 0o644


def test_g_plus_plus_uses_it_for_a_program_that_includes_the_header(
        built: Path, tmp_path: Path) -> None:
    src = tmp_path / "main.cpp"
    src.write_text("#include <bits/stdc++.h>\nint main(){std::vector<int> v{3,1,2};"
                   "std::sort(v.begin(),v.end());std::cout<<v[0]<<'\\n';}\n")
    argv = stdio.compile_argv(CPP, str(tmp_path), 256)
    assert argv[-2:] == ["-I", str(built)]
    done = subprocess.run([*argv, "-H"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"! {built}/bits/stdc++.h.gch" in done.stderr  # GCC's mark of a PCH it used
    assert subprocess.run([str(tmp_path / "main")], capture_output=True,
                          text=True).stdout == "1\n"


@pytest.mark.parametrize("head", [
    "#include <bits/stdc++.h>\n#include <bits/stdc++.h>\n",  # twice
    "#define LIMIT 5\n#include <bits/stdc++.h>\n",  # not first: the header itself is read
    "#pragma GCC optimize(\"O3\")\n#include <bits/stdc++.h>\n",
    "#include <vector>\n#include <bits/stdc++.h>\n",
], ids=["twice", "after-a-define", "after-a-pragma", "after-another-header"])
def test_a_program_the_header_cannot_serve_compiles_as_without_it(
        built: Path, tmp_path: Path, head: str) -> None:
    """GCC resolves a later include of the header to the directory the first came from; a
    header of the same name there includes the system's (else: 'No such file')."""
    (tmp_path / "main.cpp").write_text(head + "int main(){std::cout<<7<<'\\n';}\n")
    argv = stdio.compile_argv(CPP, str(tmp_path), 256)
    assert "-I" in argv
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert subprocess.run([str(tmp_path / "main")], capture_output=True,
                          text=True).stdout == "7\n"


def test_c_gets_no_cpp_header(built: Path, tmp_path: Path) -> None:
    assert "-I" not in stdio.compile_argv(languages.LANGUAGES["c"], str(tmp_path), 256)


@pytest.mark.parametrize("change", ["file-writable", "dir-writable", "file-owner",
                                    "above-writable", "missing", "next-writable"])
def test_a_header_another_user_could_change_is_not_used(built: Path, change: str) -> None:
    """Every compile of every request would read it: if a program's uid could have written it
    (or replaced a directory on the way to it), it is not used."""
    gch = built / "bits" / "stdc++.h.gch"
    target, undo = {
        "file-writable": (gch, lambda: os.chmod(gch, 0o666)),
        "dir-writable": (gch.parent, lambda: os.chmod(gch.parent, 0o777)),
        "file-owner": (gch, lambda: os.chown(gch, 61990, 61990)),
        "above-writable": (built.parent, lambda: os.chmod(built.parent, 0o775)),
        "missing": (gch, lambda: os.rename(gch, str(gch) + ".away")),
        "next-writable": (built / "bits" / "stdc++.h",
                          lambda: os.chmod(built / "bits" / "stdc++.h", 0o646)),
    }[change]
    before = target.stat()
    undo()
    try:
        assert pch.ready() is None
        assert "-I" not in stdio.compile_argv(CPP, "/tmp", 256)
    finally:
        if change == "missing":
            os.rename(str(gch) + ".away", gch)
        else:
            os.chmod(target, before.st_mode & 0o7777)
            os.chown(target, before.st_uid, before.st_gid)
    assert pch.ready() == str(built)
