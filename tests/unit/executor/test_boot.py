"""How a worker's interpreter starts (sandbox/boot.py): without `site`, and still what programs
expect of a Python: the environment's packages, the builtins `site` adds."""

from __future__ import annotations

import os
from pathlib import Path

from acecoder.clients import ExecutorClient, StdioTest
from acecoder.executor.sandbox import boot
from acecoder.executor.types import Verdict


def test_site_directories_and_the_paths_their_pth_files_name_but_no_import_line(
        tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "extra").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    ran = tmp_path / "ran"
    (site / "a.pth").write_text(
        f"# a comment\nextra\n{tmp_path / 'elsewhere'}\nmissing\n"
        f"import os; open({str(ran)!r}, 'w').close()\n")
    (site / "b.pth").write_bytes(b"\xff\xfe not text")
    got = boot._site_dirs([str(site), str(site), str(tmp_path / "no-such-dir")])
    assert got == [str(site), str(site / "extra"), str(tmp_path / "elsewhere")]
    assert not ran.exists()


def test_the_server_names_where_its_packages_are() -> None:
    import json
    import sys

    import acecoder

    given = json.loads(boot.arguments())
    assert given["packages"][0] == ["acecoder", acecoder.__file__]
    assert [name for name, _ in given["packages"]] == ["acecoder", "acecoder.executor"]
    assert all(os.path.isdir(d) for d in given["site"])
    assert (given["prefix"], given["exec_prefix"]) == (sys.prefix, sys.exec_prefix)


def test_a_worker_s_interpreter_sees_the_installation_as_the_server_does(
        client: ExecutorClient) -> None:
    """`sys.prefix` (a virtual environment's, which `site` sets) is the server's: the
    installation's own files are found from it (the precompiled C++ headers: without them a
    compile took four times as long)."""
    import sys

    program = "import sys\nprint(sys.prefix)\nprint(sys.exec_prefix)\n"
    r = client.execute(program, [StdioTest("", f"{sys.prefix}\n{sys.exec_prefix}")])
    assert r.verdicts == [Verdict.PASSED], r


def test_a_program_has_what_site_gives_a_python_and_none_of_its_hooks(
        client: ExecutorClient) -> None:
    """The builtins `site` adds (exit, quit, help, copyright, credits, license), the
    environment's packages (numpy), and no import hook run from a `.pth` file (a development
    install's finder) in the program's interpreter."""
    program = (
        "import builtins, sys\n"
        "def builtins_site_adds():\n"
        "    return [n for n in ('exit', 'quit', 'help', 'copyright', 'credits', 'license')\n"
        "            if not hasattr(builtins, n)]\n"
        "def hooks():\n"
        "    return [type(f).__name__ for f in sys.meta_path\n"
        "            if 'editable' in (type(f).__name__ + getattr(f, '__name__', '')).lower()]\n"
        "def numpy_sum(xs):\n"
        "    import numpy\n"
        "    return int(numpy.array(xs).sum())\n"
    )
    r = client.execute(program, ["assert builtins_site_adds() == []", "assert hooks() == []",
                                 "assert numpy_sum([1, 2, 3]) == 6"])
    assert r.verdicts == [Verdict.PASSED] * 3, r
    r = client.execute("print(int(input()) * 2)\nexit()\nprint('not reached')\n",
                       [StdioTest("21", "42")])
    assert r.verdicts == [Verdict.PASSED], r
    r = client.execute("import sys\nprint(7)\nquit(3)\n", [StdioTest("", "7")])
    assert r.verdicts == [Verdict.ERROR], r  # a non-zero exit is a runtime error
