"""`acecoder exec`: a JSONL file of programs and tests through the sandbox."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import add_executor_options, executor_config, offline_job


def register(sub: Any) -> None:
    """`exec`."""
    p = sub.add_parser("exec", help="run a JSONL file of programs and tests, write verdicts",
                       description="Run programs against their assert tests in the sandbox. "
                                   "Input lines: {\"id\", \"program\", \"tests\"}. Output lines: "
                                   "{\"id\", \"pass_rate\", \"verdicts\", \"status\"}. Rerunning "
                                   "with the same --output skips ids already written.")
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="time limit per test, seconds (default 3)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_executor_options(p)
    p.set_defaults(func=cmd_exec)


def cmd_exec(args: argparse.Namespace) -> int:
    from acecoder.executor import offline

    job = offline.run(Path(args.input), Path(args.output), executor_config(args),
                      timeout=args.timeout, progress=not args.quiet)
    return offline_job("exec", job, "{ran} programs run, {skipped} already in "
                    f"{args.output}, {{invalid}} invalid")
