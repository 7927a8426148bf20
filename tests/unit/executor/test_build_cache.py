"""stdio.BuildCache and the worker's reading and placing of a build's files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from acecoder.executor import languages
from acecoder.executor.sandbox.stdio import BuildCache, _harvest, _place

C, CPP = languages.LANGUAGES["c"], languages.LANGUAGES["cpp"]


def test_the_key_is_the_language_its_flags_and_the_exact_source() -> None:
    src = "int main(void){return 0;}\n"
    assert BuildCache.key(C, src) == BuildCache.key(C, src)
    assert BuildCache.key(C, src) != BuildCache.key(C, src + " ")
    assert BuildCache.key(C, src) != BuildCache.key(CPP, src)


def test_the_cache_is_bounded_and_one_build_evicts_no_others() -> None:
    cache = BuildCache(max_bytes=800)
    for k in range(10):
        cache.put(f"k{k}", {"main": (b"x" * 100, 0o755)})
    assert cache.bytes <= 800 and cache.get("k0") is None and cache.get("k9") is not None
    cache.put("huge", {"main": (b"x" * 101, 0o755)})  # over an eighth of the budget
    assert cache.get("huge") is None and cache.get("k9") is not None
    assert cache.hits == 2


def test_harvest_keeps_the_regular_files_and_their_modes(tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text("source")
    (tmp_path / "main").write_bytes(b"\x7fELF")
    (tmp_path / "main").chmod(0o755)
    (tmp_path / "Main$1.class").write_bytes(b"\xca\xfe")
    (tmp_path / "Main$1.class").chmod(0o644)
    (tmp_path / ".gocache").mkdir()
    (tmp_path / ".gocache" / "x").write_bytes(b"cache")
    files = _harvest(str(tmp_path), "main.c", 1 << 20)
    assert files == {"main": (b"\x7fELF", 0o755), "Main$1.class": (b"\xca\xfe", 0o644)}


@pytest.mark.parametrize("what", ["symlink", "fifo", "too-big"])
def test_harvest_keeps_nothing_from_a_directory_with_anything_else(tmp_path: Path,
                                                                   what: str) -> None:
    """A link (to a file the worker could read and the program not), a special file, or
    more than the limit: the build is not kept at all."""
    (tmp_path / "main").write_bytes(b"\x7fELF")
    if what == "symlink":
        (tmp_path / "evil").symlink_to("/etc/hostname")
    elif what == "fifo":
        os.mkfifo(tmp_path / "evil")
    else:
        (tmp_path / "evil").write_bytes(b"x" * 100)
    assert _harvest(str(tmp_path), "main.c", 64) is None


def test_place_writes_fresh_files_and_never_follows_a_link(tmp_path: Path) -> None:
    _place(str(tmp_path), {"main": (b"bin", 0o755), "main.c": (b"src", 0o600)}, None)
    assert (tmp_path / "main").read_bytes() == b"bin"
    assert stat.S_IMODE((tmp_path / "main").stat().st_mode) == 0o755
    target = tmp_path / "elsewhere"
    other = tmp_path / "d"
    other.mkdir()
    (other / "main").symlink_to(target)
    with pytest.raises(FileExistsError):
        _place(str(other), {"main": (b"bin", 0o755)}, None)
    assert not target.exists()


def test_the_pool_gives_each_worker_a_build_once_and_only_as_made() -> None:
    """SharedBuilds: a build a worker made goes to every other worker once, with the worker's
    own key of it; what is not a build as stdio._build returns it is dropped; the budget
    holds; the pool's key is the request's language and source alone."""
    from acecoder.executor.config import ExecutorConfig
    from acecoder.executor.pool import SharedBuilds, _Worker
    from acecoder.executor.types import ExecutionRequest

    a, b = (_Worker(k, "none", ExecutorConfig()) for k in range(2))
    builds = SharedBuilds(max_bytes=800)
    req = ExecutionRequest(program="int main(void){return 0;}", tests=("",), kind="stdio",
                           expected=("",), language="c", timeout=5.0, memory_mb=256)
    key = SharedBuilds.key(req)
    assert key is not None and key != SharedBuilds.key(
        ExecutionRequest(program=req.program, tests=("",), kind="stdio", expected=("",),
                         language="cpp", timeout=5.0, memory_mb=256))
    assert SharedBuilds.key(ExecutionRequest(program="print(1)", tests=("",), kind="stdio",
                                             expected=("1",), timeout=5.0,
                                             memory_mb=256)) is None  # Python: no build
    assert builds.offer(key, b) is None  # nothing built yet
    files = {"main": (b"\x7fELF", 0o755)}
    worker_key = languages.build_key(C, req.program)
    builds.take(key, (worker_key, files), a)
    assert builds.offer(key, a) is None  # a made it
    assert builds.offer(key, b) == (worker_key, files)
    assert builds.offer(key, b) is None  # given once
    builds.take("k2", ("wk2", "not files"), a)
    builds.take("k3", ["wk3", files], a)
    builds.take(None, (worker_key, files), a)
    assert builds.offer("k2", b) is None and builds.offer("k3", b) is None
    for k in range(10):
        builds.take(f"k{k}x", (f"w{k}", {"main": (b"x" * 100, 0o755)}), a)
    c = _Worker(2, "none", ExecutorConfig())
    assert builds.cache.bytes <= 800 and builds.offer(key, c) is None  # dropped: oldest


def test_a_worker_takes_only_a_build_of_plain_names() -> None:
    from acecoder.executor.sandbox.stdio import _plain_names

    assert _plain_names({"main": (b"x", 0o755), "Main$1.class": (b"y", 0o644)})
    for bad in ({"../main": (b"x", 0o755)}, {"a/b": (b"x", 0o755)}, {"": (b"x", 0o755)},
                {"main": ("x", 0o755)}, {"main": (b"x",)}, ["main"]):
        assert not _plain_names(bad)
