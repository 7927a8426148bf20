"""`acecoder exec`: a JSONL file of programs and tests through the sandbox."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import (
    EXECUTOR,
    Default,
    add_executor_options,
    add_io,
    add_quiet,
    executor_config,
    offline_job,
)


def register(sub: Any) -> None:
    """`exec`."""
    p = sub.add_parser("exec", help="run a JSONL file of programs and tests, write verdicts",
                       description="Run programs against their tests in the sandbox. "
                                   "Input lines: {\"id\", \"program\", \"tests\"}, tests being "
                                   "assert statements or stdio tests ({\"input\", \"output\"}, "
                                   "or {\"inputs\", \"outputs\"} ground truth), or, with "
                                   "\"fn_name\", call tests ({\"input\": [args...], "
                                   "\"output\": value}); with optional "
                                   "\"checker\", \"time_limit\", \"memory_limit_mb\" and "
                                   "\"language\" (python, c, cpp, java, nodejs, rust, go). Output "
                                   "lines: {\"id\", \"pass_rate\", \"verdicts\", \"status\"}. "
                                   "Rerunning with the same --output skips ids already written.")
    add_io(p)
    p.add_argument("--timeout", type=float, default=Default(EXECUTOR, "default_timeout"),
                   metavar="S", help="time limit per test, seconds (default %(default)s)")
    add_quiet(p)
    add_executor_options(p)
    p.set_defaults(func=cmd_exec)


def cmd_exec(args: argparse.Namespace) -> int:
    from acecoder.executor import offline

    job = offline.run(Path(args.input), Path(args.output), executor_config(args),
                      timeout=args.timeout, progress=not args.quiet)
    return offline_job("exec", job, "{ran} programs run, {skipped} already in "
                    f"{args.output}, {{invalid}} invalid")
