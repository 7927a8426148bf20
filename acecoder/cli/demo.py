"""`acecoder demo`: the main job on the embedded defaults (see acecoder.demo)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import Default, add_executor_options

DEMO = "acecoder.demo:main"


def register(sub: Any) -> None:
    """`demo`."""
    p = sub.add_parser("demo", help="the main job: the three services on the embedded models",
                       description="Start the executor, RM and synthesis services as processes "
                                   "on loopback; run every MbppBase reference solution and a "
                                   "broken variant of each through the executor, then "
                                   "competitive-programming problems in Python and C++; rank "
                                   "four "
                                   "candidates per problem for a few dozen problems (online "
                                   "best-of-N: random vs RM vs tests, with a latency budget); "
                                   "run a test-synthesis job; run a few REINFORCE++ steps with "
                                   "rewards from the executor and the RM server; stop every "
                                   "service and check that no process is left.")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems")
    p.add_argument("--rm-problems", type=int, default=Default(DEMO, "rm_problems"),
                   help="problems for the best-of-N step (default %(default)s)")
    p.add_argument("--budget", type=float, default=Default(DEMO, "budget"), metavar="S",
                   help="latency budget of the budgeted best-of-N pick (default %(default)s)")
    p.add_argument("--synth-questions", type=int, default=Default(DEMO, "synth_questions"),
                   help="questions for the synthesis step (default %(default)s; 0 skips it and "
                        "the synthesis service)")
    p.add_argument("--rl-steps", type=int, default=Default(DEMO, "rl_steps"),
                   help="REINFORCE++ steps for the RL step (default %(default)s; 0 skips it)")
    p.add_argument("--cp-problems", type=int, default=Default(DEMO, "cp_problems"),
                   help="competitive-programming problems per language for the stdin/stdout "
                        "step (default %(default)s; 0 skips it)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="where the outputs go (default: a new temporary directory)")
    add_executor_options(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from acecoder import demo

    return demo.main(workers=args.workers, jail=args.jail, limit=args.limit,
                     rm_problems=args.rm_problems, synth_questions=args.synth_questions,
                     rl_steps=args.rl_steps, budget=args.budget, output=args.output,
                     cp_problems=args.cp_problems)
