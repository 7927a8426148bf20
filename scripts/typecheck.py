#!/usr/bin/env python3
"""Run mypy on the run-time packages under their installed module names (`make lint`).

`executor/pool.py` is `acecoder.executor.pool` once installed ([tool.setuptools] package-dir in
pyproject.toml), but plain `mypy executor` would call it `executor.pool`, and every
`from acecoder.executor import ...` would then be a missing module. This script takes the files
and options from [tool.mypy] (or the command line, like mypy), renames each file by the
package-dir map and runs the same build mypy runs.
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path

from mypy import util
from mypy.fscache import FileSystemCache
from mypy.main import process_options, run_build
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


def package_dirs() -> dict[Path, str]:
    """Each mapped directory and the package it installs as."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {(ROOT / folder).resolve(): package for package, folder in mapping.items()}


def module_of(path: str, packages: dict[Path, str]) -> str:
    """The installed name of a source file: `executor/pool.py` is `acecoder.executor.pool`."""
    file = Path(path).resolve()
    parts = [] if file.name in ("__init__.py", "__init__.pyi") else [file.name.split(".")[0]]
    folder = file.parent
    while folder not in packages:
        if folder == folder.parent:
            raise SystemExit(f"{path} is in no folder of [tool.setuptools] package-dir")
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join([packages[folder], *parts])


def main() -> int:
    t0 = time.time()
    fscache = FileSystemCache()
    sources, options = process_options(sys.argv[1:], fscache=fscache)
    # A cache of its own: one written by plain `mypy` (other module names) misleads this run.
    options.cache_dir = str(ROOT / ".mypy_cache" / "installed-names")
    packages = package_dirs()
    sources = [BuildSource(s.path, module_of(s.path, packages) if s.path else s.module,
                           s.text, str(ROOT)) for s in sources]
    _, messages, blockers = run_build(sources, options, fscache, t0, sys.stdout, sys.stderr)
    formatter = util.FancyFormatter(sys.stdout, sys.stderr, options.hide_error_codes)
    n_errors, n_notes, n_files = util.count_stats(messages)
    if n_errors:
        print(formatter.format_error(n_errors, n_files, len(sources), blockers=blockers,
                                     use_color=options.color_output))
    else:
        print(formatter.format_success(len(sources), options.color_output))
    return (2 if blockers else 1) if messages and n_notes < len(messages) else 0


if __name__ == "__main__":
    sys.exit(main())
