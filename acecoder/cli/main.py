"""The `acecoder` command: the top parser; each command family registers its subcommands
from its own module (exec, serve, rm, synth, data, train, demo, models)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from acecoder import __version__

from . import data, demo, models, rm, serve, synth, train
from . import exec as exec_cmd
from .common import Parser

EPILOG = """\
examples:
  acecoder exec --input programs.jsonl --output verdicts.jsonl --workers 2
  acecoder serve executor --port 50051 --metrics-port 9090
  acecoder serve rm --model embedded:smollm2-135m --port 50052 --http-port 5000
  acecoder score --input pairs.jsonl --output scores.jsonl
  acecoder serve synth --llm http://localhost:8000/v1 --llm-model gpt-4o-mini --port 50053
  acecoder serve all --http-port 5000
  acecoder synth --input seeds.jsonl --output acecode.jsonl --llm local
  acecoder rerank --input candidates.jsonl --output ranked.jsonl --server localhost:50052
  acecoder rerank --input q.jsonl --output ranked.jsonl --server localhost:50052 --budget 0.5
  acecoder rm convert --model ./AceCodeRM-7B --output ./AceCodeRM-7B-seqcls
  acecoder models install        # the embedded models' files, into the cache
  acecoder demo
"""


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(
        prog="acecoder",
        description="Infrastructure for reinforcement learning of code models: sandboxed test "
                    "execution, reward-model scoring, test synthesis and trainers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    ap.add_argument("-V", "--version", action="version", version=f"acecoder {__version__}",
                    help="print the version and exit")
    # The deepspeed launcher puts --local_rank=N before everything else (torchrun uses env).
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None,
                    help=argparse.SUPPRESS)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    exec_cmd.register(sub)
    serve.register(sub)
    rm.register(sub)
    synth.register(sub)
    data.register(sub)
    rm.register_tools(sub)
    train.register(sub)
    demo.register(sub)
    models.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    from acecoder import log

    log.configure(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except ValueError as exc:  # configuration checked at start-up: say what is wrong, no trace
        print(f"acecoder {args.command}: {exc}", file=sys.stderr)
        return 2
