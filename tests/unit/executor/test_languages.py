"""Which languages this machine runs: every one, here (`make test` installs the toolchains),
and a language whose toolchain is not in the system's directories is refused with the package
that brings it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acecoder.errors import FailedPrecondition
from acecoder.executor import languages


@pytest.fixture
def no_system_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(languages, "SYSTEM_PATH", str(tmp_path))
    languages.toolchain.cache_clear()
    yield
    monkeypatch.undo()
    languages.toolchain.cache_clear()


def test_every_language_has_its_toolchain_here() -> None:
    """`make test` installs what is missing (make sysdeps): a language test never passes here
    by finding no toolchain."""
    assert set(languages.available()) == set(languages.LANGUAGES)


def test_a_toolchain_from_a_per_user_install_does_not_count(no_system_tools: None) -> None:
    assert languages.toolchain("go") is None
    assert languages.toolchain("python") is not None  # the server's own interpreter
    assert set(languages.available()) == {"python"}


@pytest.mark.parametrize("name", sorted(set(languages.LANGUAGES) - {"python"}))
def test_a_language_without_its_toolchain_names_the_package(no_system_tools: None,
                                                            name: str) -> None:
    with pytest.raises(FailedPrecondition) as err:
        languages.check(name, stdio=True)
    assert repr(languages.LANGUAGES[name].package) in str(err.value)
    assert "send one of: python" in str(err.value)


def test_static_linking_is_tried_once_and_dropped_where_it_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """C and C++ link statically where the toolchain can; a toolchain without libc.a (some
    systems package it apart) builds as before, dynamically, instead of failing every
    compile. Go, Rust, Java and Node take no such flag."""
    cpp = languages.LANGUAGES["cpp"]
    languages.links_static.cache_clear()
    assert languages.links_static("cpp") and languages.links_static("c")
    assert languages.compile_template(cpp) == cpp.compile + ("-static", "-fuse-ld=gold")
    assert not any(languages.links_static(n) for n in ("go", "rust", "java", "nodejs"))
    # a linker that finds no static libraries: a wrapper that fails on -static
    fake = tmp_path / "g++"
    fake.write_text("#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -static ] && exit 1; done\n"
                    "exec /usr/bin/g++ \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setattr(languages, "SYSTEM_PATH", f"{tmp_path}:{languages.SYSTEM_PATH}")
    languages.toolchain.cache_clear()
    languages._which.cache_clear()
    languages.links_static.cache_clear()
    try:
        assert not languages.links_static("cpp")
        assert languages.compile_template(cpp) == cpp.compile
    finally:
        monkeypatch.undo()
        languages.toolchain.cache_clear()
        languages._which.cache_clear()
        languages.links_static.cache_clear()
