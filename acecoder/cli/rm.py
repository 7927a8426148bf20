"""`acecoder score`, `rerank`, `rm convert` and `rm calibrate`: the reward model offline and its
checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from acecoder.ranking import SYNTH_SHARE

from .common import Default, add_io, add_model_options, add_quiet, offline_job, reward_config


def register(sub: Any) -> None:
    """`score` and `rerank`."""
    p = sub.add_parser("score", help="score a JSONL file of (question, response) records",
                       description="Score records with the reward model. Input lines: "
                                   "{\"id\", \"question\", \"response\"}. Output lines: "
                                   "{\"id\", \"score\"}. Rerunning with the same --output "
                                   "skips ids already written.")
    add_io(p)
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="use a running `acecoder serve rm` instead of loading the model here")
    add_quiet(p)
    add_model_options(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("rerank", help="rank N candidates per question (best-of-N)",
                       description="Rank candidates. Input lines: {\"id\", \"question\", "
                                   "\"candidates\": [...], \"tests\": [...] (optional), "
                                   "\"setup\" (optional)}. Output lines: {\"id\", \"best\", "
                                   "\"ranked\": [{\"index\", \"score\", \"pass_rate\", "
                                   "\"verdicts\"}], \"complete\", \"tests_source\", "
                                   "\"seconds\"}, best first. With tests, pass rate ranks "
                                   "first, RM score breaks ties (the RM server, or this process "
                                   "with --executor, runs them). With --budget, the best so far "
                                   "is written when a question's time runs out.")
    add_io(p)
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="use a running `acecoder serve rm` instead of loading the model here")
    p.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="executor service to run tests with (in-process scoring only)")
    p.add_argument("--budget", type=float, default=None, metavar="S",
                   help="latency budget per question, seconds: rank what has arrived when it "
                        "runs out (default: wait for every score and test)")
    p.add_argument("--synth", default=None, metavar="HOST:PORT",
                   help="synthesis service: imagine tests for questions that bring none (it "
                        f"may take {SYNTH_SHARE * 100:.0f}%% of the budget)")
    p.add_argument("--concurrency", type=int,
                   default=Default("acecoder.server.rm.rerank:run", "concurrency"),
                   help="questions ranked at once (default %(default)s)")
    add_quiet(p)
    add_model_options(p)
    p.set_defaults(func=cmd_rerank)


def register_tools(sub: Any) -> None:
    """`rm convert` and `rm calibrate`."""
    p = sub.add_parser("rm", help="reward-model checkpoint tools",
                       description="Tools for reward-model checkpoints.")
    tools = p.add_subparsers(dest="tool", metavar="TOOL", required=True)
    t = tools.add_parser("convert", help="AceCode-RM checkpoint -> one-label seq-cls checkpoint",
                         description="Turn an AceCode-RM checkpoint (causal LM + v_head.summary) "
                                     "into a one-label *ForSequenceClassification checkpoint "
                                     "that vLLM's pooling runner serves; scores agree.")
    t.add_argument("--model", required=True, metavar="PATH|ID", help="the AceCode-RM checkpoint")
    t.add_argument("--output", required=True, metavar="DIR", help="where to write (new directory)")
    t.set_defaults(func=cmd_rm_convert)
    t = tools.add_parser(
        "calibrate", help="fit a checkpoint's calibration (p(correct) from its raw score)",
        description="Fit Platt scaling, p(correct) = sigmoid(scale * raw + shift), for a reward "
                    "model on labelled items: pass-rate rows {\"question\", \"program\" or "
                    "\"response\", \"pass_rate\"} (correct when pass_rate == 1) or preference "
                    "pairs {\"instruction\", \"chosen\", \"rejected\"}. Write the result as "
                    "calibration.json beside the checkpoint (the RM server picks it up) or pass "
                    "it to `serve rm --calibration`.")
    t.add_argument("--input", required=True, metavar="FILE.jsonl", help="labelled items")
    t.add_argument("--output", required=True, metavar="FILE.json",
                   help="where to write the calibration")
    add_model_options(t)
    t.set_defaults(func=cmd_rm_calibrate)


def cmd_score(args: argparse.Namespace) -> int:
    from acecoder.server.rm import offline

    job = offline.run(Path(args.input), Path(args.output), reward_config(args),
                      server=args.server, progress=not args.quiet)
    return offline_job("score", job, "{scored} items scored, {skipped} already in "
                    f"{args.output}, {{invalid}} invalid")


def cmd_rerank(args: argparse.Namespace) -> int:
    from acecoder.server.rm import rerank

    config = reward_config(args)
    job = rerank.run(Path(args.input), Path(args.output), config, server=args.server,
                     progress=not args.quiet, budget=args.budget, synth=args.synth,
                     concurrency=args.concurrency)
    return offline_job("rerank", job, "{ranked} questions ranked ({partial} cut short by the "
                    f"budget), {{skipped}} already in {args.output}, {{invalid}} invalid")


def cmd_rm_convert(args: argparse.Namespace) -> int:
    from acecoder.models.convert import to_seq_cls

    try:
        out = to_seq_cls(args.model, Path(args.output))
    except ValueError as exc:
        print(f"acecoder rm convert: {exc}", file=sys.stderr)
        return 2
    print(f"wrote a one-label sequence classifier to {out}", file=sys.stderr)
    return 0


def cmd_rm_calibrate(args: argparse.Namespace) -> int:
    import asyncio

    from acecoder.server.rm import calibrate

    try:
        fitted = asyncio.run(calibrate.run(Path(args.input), Path(args.output),
                                           reward_config(args)))
    except ValueError as exc:
        print(f"acecoder rm calibrate: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: scale {fitted.scale:.4g}, shift {fitted.shift:.4g} from "
          f"{fitted.n} items; Brier {fitted.brier_before:.4f} (sigmoid of the raw score) -> "
          f"{fitted.brier_after:.4f} (calibrated)", file=sys.stderr)
    return 0
