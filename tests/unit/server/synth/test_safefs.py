"""Job files below a root: no link followed at any component, at every open."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from acecoder.jsonl import done_ids, read_records
from acecoder.server.synth.safefs import JobPath, Root, UnsafeFile, finish


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Root]:
    (tmp_path / "data").mkdir()
    r = Root(tmp_path / "data")
    yield r
    r.close()


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the root that no job may touch."""
    (tmp_path / "outside").mkdir()
    v = tmp_path / "outside" / "victim.txt"
    v.write_text("precious\n")
    return v


@pytest.mark.parametrize("mode", ["r", "rb", "r+b", "a", "ab", "w", "wb"])
def test_a_link_as_the_file_is_refused_in_every_mode(root: Root, victim: Path,
                                                     mode: str) -> None:
    (root.directory / "out.jsonl").symlink_to(victim)
    with pytest.raises(UnsafeFile, match="out.jsonl is a symbolic link, not a regular file"):
        root.path("out.jsonl").open(mode)
    assert victim.read_text() == "precious\n"


def test_a_link_to_a_file_inside_the_root_is_refused_too(root: Root) -> None:
    (root.directory / "real.jsonl").write_text("{}\n")
    (root.directory / "alias.jsonl").symlink_to("real.jsonl")
    with pytest.raises(UnsafeFile, match="symbolic link"):
        root.path("alias.jsonl").open("r")


@pytest.mark.parametrize("op", ["open-a", "open-r", "exists", "mkdir", "unlink", "replace"])
def test_a_link_in_a_parent_directory_is_refused(root: Root, victim: Path, op: str) -> None:
    (root.directory / "sub").symlink_to(victim.parent, target_is_directory=True)
    p = root.path("sub/deeper/victim.txt" if op == "mkdir" else "sub/victim.txt")
    calls = {
        "open-a": lambda: p.open("a"),
        "open-r": lambda: p.open("r"),
        "exists": p.exists,
        "mkdir": lambda: p.parent.mkdir(parents=True, exist_ok=True),
        "unlink": p.unlink,
        "replace": lambda: root.path("x").replace(p),
    }
    (root.directory / "x").write_text("x")
    with pytest.raises(UnsafeFile, match="sub is a symbolic link, not a directory"):
        calls[op]()
    assert victim.read_text() == "precious\n"
    assert sorted(os.listdir(victim.parent)) == ["victim.txt"]


def test_missing_directories_are_made_and_a_file_on_the_way_is_refused(root: Root) -> None:
    with root.path("a/b/out.jsonl").open("a", encoding="utf-8") as f:
        f.write("{}\n")
    assert (root.directory / "a" / "b" / "out.jsonl").read_text() == "{}\n"
    with pytest.raises(UnsafeFile, match="is a regular file, not a directory"):
        root.path("a/b/out.jsonl/x").open("a")


def test_a_fifo_or_a_directory_is_not_opened(root: Root) -> None:
    os.mkfifo(root.directory / "pipe")
    for mode in ("r", "a"):  # neither hangs: O_NONBLOCK until the type is checked
        with pytest.raises(UnsafeFile, match="pipe is a FIFO"):
            root.path("pipe").open(mode)
    (root.directory / "dir").mkdir()
    with pytest.raises(UnsafeFile, match="dir is a directory"):
        root.path("dir").open("r")


def test_a_file_with_another_hard_link_is_read_but_not_written(root: Root,
                                                                victim: Path) -> None:
    try:
        os.link(victim, root.directory / "hard.jsonl")
    except OSError as exc:  # another filesystem
        pytest.skip(f"no hard link across these directories: {exc}")
    assert root.path("hard.jsonl").read_text() == "precious\n"
    for mode in ("a", "w", "r+b"):
        with pytest.raises(UnsafeFile, match="other hard link"):
            root.path("hard.jsonl").open(mode)
    assert victim.read_text() == "precious\n"


def test_w_truncates_only_a_file_of_its_own(root: Root) -> None:
    (root.directory / "f").write_text("old content")
    with root.path("f").open("w") as f:
        f.write("new")
    assert (root.directory / "f").read_text() == "new"


def test_replace_renames_over_a_link_not_through_it(root: Root, victim: Path) -> None:
    (root.directory / "out.parquet").symlink_to(victim)
    (root.directory / "out.parquet.tmp").write_text("fresh")
    root.path("out.parquet.tmp").replace(root.path("out.parquet"))
    assert not (root.directory / "out.parquet").is_symlink()
    assert (root.directory / "out.parquet").read_text() == "fresh"
    assert victim.read_text() == "precious\n"


def test_paths_cannot_leave_the_root_or_be_opened_by_name(root: Root) -> None:
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValueError, match="not a path below"):
            root.path(bad)
    p = root.path("a/out.parquet")
    with pytest.raises(TypeError):
        open(p)  # type: ignore[call-overload]  # no __fspath__: nothing opens it by name
    assert (p.name, p.suffix, str(p.parent)) == ("out.parquet", ".parquet",
                                                 str(root.directory / "a"))
    assert p.with_name("b") == root.path("a/b")
    assert str(p) == str(root.directory / "a" / "out.parquet")
    with pytest.raises(ValueError, match="cannot name"):
        p.with_name("../b")
    with pytest.raises(ValueError, match="mode"):
        p.open("x")


def test_the_shared_jsonl_helpers_read_and_resume_through_it(root: Root) -> None:
    (root.directory / "out.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "x')
    out: JobPath = root.path("out.jsonl")
    assert done_ids(out) == {"a", "b"}  # type: ignore[arg-type]
    assert (root.directory / "out.jsonl").read_text() == '{"id": "a"}\n{"id": "b"}\n'
    rows = read_records(out, lambda rid, row: rid)  # type: ignore[arg-type]
    assert rows == ["a", "b"]


def test_finish_writes_parquet_through_the_root(root: Root, victim: Path) -> None:
    import pyarrow.parquet as pq

    staged = root.directory / "out.parquet.partial.jsonl"
    staged.write_text("".join(json.dumps({"id": str(k)}) + "\n" for k in range(3)))
    (root.directory / "out.parquet.tmp").symlink_to(victim)
    with pytest.raises(UnsafeFile, match="out.parquet.tmp is a symbolic link"):
        finish(root.path("out.parquet"))
    assert victim.read_text() == "precious\n" and staged.exists()
    (root.directory / "out.parquet.tmp").unlink()
    finish(root.path("out.parquet"))
    assert pq.read_table(root.directory / "out.parquet").column("id").to_pylist() == [
        "0", "1", "2"]
    assert not staged.exists() and not (root.directory / "out.parquet.tmp").exists()


def test_the_odd_requests_are_refused(root: Root, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the root itself"):
        root.path("").open("r")
    with pytest.raises(FileExistsError):
        root.path("").mkdir()
    root.path("").mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError):
        root.path("absent").unlink()
    root.path("absent").unlink(missing_ok=True)
    (root.directory / "d").mkdir()
    with pytest.raises(FileExistsError):
        root.path("d").mkdir()
    other = Root(tmp_path)
    try:
        (root.directory / "f").write_text("f")
        with pytest.raises(ValueError, match="different roots"):
            root.path("f").replace(other.path("g"))
    finally:
        other.close()
