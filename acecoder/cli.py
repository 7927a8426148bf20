"""The `acecoder` command. Each service adds its subcommands here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

EPILOG = """\
examples:
  acecoder exec --input programs.jsonl --output verdicts.jsonl --workers 2
  acecoder serve executor --port 50051 --metrics-port 9090
  acecoder demo
"""


def _executor_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from acecoder.executor.config import ExecutorConfig

    kw = {"workers": args.workers, "jail": args.jail}
    if getattr(args, "max_queue", None) is not None:
        kw["max_queue"] = args.max_queue
    if getattr(args, "timeout", None) is not None:
        kw["default_timeout"] = args.timeout
        kw["max_timeout"] = max(60.0, args.timeout)
    if getattr(args, "memory_mb", None) is not None:
        kw["default_memory_mb"] = args.memory_mb
        kw["max_memory_mb"] = max(8192, args.memory_mb)
    return ExecutorConfig(**kw)


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    import os

    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1),
                   help="jailed worker processes, about one core each (default: CPU count)")
    p.add_argument("--jail", default="auto",
                   choices=["auto", "firejail", "bubblewrap", "namespaces"],
                   help="sandbox for the workers (default: the first that works here)")
    p.add_argument("--memory-mb", type=int, default=None,
                   help="address-space limit per program, MiB (default 1024)")


def cmd_exec(args: argparse.Namespace) -> int:
    from acecoder.executor import offline

    config = _executor_config(args)
    try:
        counts = asyncio.run(offline.run(Path(args.input), Path(args.output), config,
                                         timeout=args.timeout, progress=not args.quiet))
    except offline.InputError as exc:
        print(f"acecoder exec: bad input:\n{exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"acecoder exec: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    print(f"{counts['ran']} programs run, {counts['skipped']} already in {args.output}, "
          f"{counts['invalid']} invalid", file=sys.stderr)
    return 0


def cmd_serve_executor(args: argparse.Namespace) -> int:
    from acecoder.executor.main import ServerConfig, serve

    config = _executor_config(args)
    server = ServerConfig(host=args.host, port=args.port, metrics_port=args.metrics_port,
                          grace=args.grace)
    asyncio.run(serve(config, server))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from acecoder.executor import demo

    return demo.main(workers=args.workers, jail=args.jail, limit=args.limit)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="acecoder",
        description="Infrastructure for reinforcement learning of code models: sandboxed test "
                    "execution, reward-model scoring, test synthesis and trainers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    _add_executor_options(p)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("serve", help="run a service",
                       description="Run one of acecoder's gRPC services until SIGTERM.")
    services = p.add_subparsers(dest="service", metavar="SERVICE", required=True)
    s = services.add_parser("executor", help="the sandboxed test-execution service",
                            description="Serve acecoder.v1.Executor (with grpc health and "
                                        "reflection) until SIGTERM, then drain.")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=50051, help="gRPC port; 0 picks one (default 50051)")
    s.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this port (default: off)")
    s.add_argument("--max-queue", type=int, default=None,
                   help="requests that may wait for a worker before RESOURCE_EXHAUSTED (default 256)")
    s.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="default time limit per test, seconds (default 3)")
    s.add_argument("--grace", type=float, default=20.0,
                   help="seconds to finish admitted work after SIGTERM (default 20)")
    _add_executor_options(s)
    s.set_defaults(func=cmd_serve_executor)

    p = sub.add_parser("demo", help="serve the executor and run MbppBase through it",
                       description="Start an executor server, run every MbppBase reference "
                                   "solution and a broken variant of each through it, print "
                                   "verdicts and throughput, stop the server.")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems")
    _add_executor_options(p)
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from acecoder import log

    log.configure(logging.DEBUG if args.verbose else logging.INFO)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
