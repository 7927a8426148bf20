"""`acecoder pairs` and `hard`: preference pairs and AceCoder's hard subset from records."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import Default, add_io, add_quiet, offline_job

PAIRS = "acecoder.server.synth.pairs:PairRule"


def register(sub: Any) -> None:
    """`pairs` and `hard`."""
    p = sub.add_parser("pairs", help="preference pairs from AceCode-87K records (RM training)",
                       description="Build AceCodePair records {\"id\", \"instruction\", "
                                   "\"input\", \"chosen\", \"rejected\"} from AceCode-87K "
                                   "records with inferences, by AceCoder's rule unless told "
                                   "otherwise. Rerunning with the same --output writes only "
                                   "what is missing.")
    add_io(p)
    p.add_argument("--min-chosen", type=float, default=Default(PAIRS, "min_chosen"),
                   help="a chosen program's pass rate, at least (default %(default)s)")
    p.add_argument("--min-rejected", type=float, default=Default(PAIRS, "min_rejected"),
                   help="a rejected program's pass rate, more than (default %(default)s)")
    p.add_argument("--min-gap", type=float, default=Default(PAIRS, "min_gap"),
                   help="chosen minus rejected pass rate, at least (default %(default)s)")
    p.add_argument("--across-models", action="store_true",
                   help="also pair samples of different models (default: within one model)")
    p.add_argument("--max-per-question", type=int, default=None,
                   help="keep at most N pairs per question, widest gaps first")
    add_quiet(p)
    p.set_defaults(func=cmd_pairs)

    p = sub.add_parser("hard", help="AceCoder's hard subset of AceCode-87K records (RL)",
                       description="Keep questions whose mean pass rate is at most the median "
                                   "and whose pass-rate standard deviation is at least the "
                                   "median among those.")
    add_io(p)
    add_quiet(p)
    p.set_defaults(func=cmd_hard)


def cmd_pairs(args: argparse.Namespace) -> int:
    from acecoder.server.synth import offline
    from acecoder.server.synth.pairs import PairRule

    rule = PairRule(min_chosen=args.min_chosen, min_rejected=args.min_rejected,
                    min_gap=args.min_gap, same_model=not args.across_models,
                    max_per_question=args.max_per_question)

    async def job() -> dict[str, int]:
        return offline.run_pairs(Path(args.input), Path(args.output), rule,
                                 progress=not args.quiet)

    return offline_job("pairs", job(), "{pairs} pairs from {questions} questions "
                    "({without_pairs} without any), {written} written")


def cmd_hard(args: argparse.Namespace) -> int:
    from acecoder.server.synth import offline

    async def job() -> dict[str, int]:
        return offline.run_hard(Path(args.input), Path(args.output), progress=not args.quiet)

    return offline_job("hard", job(), "{kept} of {questions} questions kept, {written} written")
