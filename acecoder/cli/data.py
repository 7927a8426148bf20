"""`acecoder pairs` and `hard`: preference pairs and AceCoder's hard subset from records."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import offline_job


def register(sub: Any) -> None:
    """`pairs` and `hard`."""
    p = sub.add_parser("pairs", help="preference pairs from AceCode-87K records (RM training)",
                       description="Build AceCodePair records {\"id\", \"instruction\", "
                                   "\"input\", \"chosen\", \"rejected\"} from AceCode-87K "
                                   "records with inferences, by AceCoder's rule unless told "
                                   "otherwise. Rerunning with the same --output writes only "
                                   "what is missing.")
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--min-chosen", type=float, default=0.8,
                   help="a chosen program's pass rate, at least (default 0.8)")
    p.add_argument("--min-rejected", type=float, default=0.0,
                   help="a rejected program's pass rate, more than (default 0)")
    p.add_argument("--min-gap", type=float, default=0.4,
                   help="chosen minus rejected pass rate, at least (default 0.4)")
    p.add_argument("--across-models", action="store_true",
                   help="also pair samples of different models (default: within one model)")
    p.add_argument("--max-per-question", type=int, default=None,
                   help="keep at most N pairs per question, widest gaps first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pairs)

    p = sub.add_parser("hard", help="AceCoder's hard subset of AceCode-87K records (RL)",
                       description="Keep questions whose mean pass rate is at most the median "
                                   "and whose pass-rate standard deviation is at least the "
                                   "median among those.")
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
