"""`acecoder serve executor|rm|synth|all`: the services."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from .common import (add_executor_options, add_listen_options, add_model_options, executor_config,
                     executor_target, listen_security, reward_config)
from .synth import add_synth_options, llm_and_proxy, synth_config


def register(sub: Any) -> None:
    """`serve` and its services."""
    p = sub.add_parser("serve", help="run a service",
                       description="Run one of acecoder's gRPC services until SIGTERM.")
    services = p.add_subparsers(dest="service", metavar="SERVICE", required=True)
    s = services.add_parser("executor", help="the sandboxed test-execution service",
                            description="Serve acecoder.v1.Executor (with grpc health and "
                                        "reflection) until SIGTERM, then drain.")
    add_listen_options(s, port=50051)
    s.add_argument("--max-queue", type=int, default=None,
                   help="requests that may wait for a worker before RESOURCE_EXHAUSTED (default 256)")
    s.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="default time limit per test, seconds (default 3)")
    add_executor_options(s)
    s.set_defaults(func=cmd_serve_executor)

    s = services.add_parser(
        "rm", help="the AceCode-RM scoring service",
        description="Serve acecoder.v1.RewardModel (with grpc health and reflection), and "
                    "optionally the OpenRLHF-compatible HTTP gateway (POST /get_reward), until "
                    "SIGTERM, then drain. Health stays NOT_SERVING while the model loads.")
    add_listen_options(s, port=50052)
    s.add_argument("--http-port", type=int, default=None,
                   help="serve the OpenRLHF gateway on this port (default: off)")
    s.add_argument("--http-max-body-mb", type=float, default=64.0, metavar="MB",
                   help="largest request body the gateway reads; larger is refused with 413 "
                        "from its Content-Length, unread (default 64)")
    s.add_argument("--http-header-timeout", type=float, default=10.0, metavar="S",
                   help="seconds a connection has to send a request's headers before the "
                        "gateway closes it (default 10)")
    s.add_argument("--policy-template", default="auto", metavar="auto|chatml|llama3|DIR",
                   help="how the gateway splits a policy's query into question and response "
                        "(default auto: ChatML, then Llama-3)")
    s.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="executor service for Rerank requests that carry tests, and for the "
                        "gateway's rule rewards")
    s.add_argument("--gateway-reward", default="rm", choices=["rm", "rule", "mix"],
                   help="the gateway's reward: rm (the model's score, default), rule (the "
                        "executor's pass rate on the tests in each sample's label), or mix")
    s.add_argument("--gateway-binary", action="store_true",
                   help="rule/mix: 1.0 only when every test passes (AceCoder's RL reward)")
    s.add_argument("--gateway-rm-weight", type=float, default=0.5,
                   help="mix: the weight of sigmoid(RM score); the rule reward gets the "
                        "rest (default 0.5)")
    s.add_argument("--tests-file", default=None, metavar="RECORDS.jsonl",
                   help="AceCode-87K records: a label may name a record's id instead of "
                        "carrying its tests")
    s.add_argument("--max-batch-tokens", type=int, default=None,
                   help="tokens one forward may compute (default 4096)")
    s.add_argument("--max-wait-ms", type=float, default=None,
                   help="how long a free lane waits for more items (default 5)")
    s.add_argument("--max-queue", type=int, default=None,
                   help="items that may wait before RESOURCE_EXHAUSTED (default 4096)")
    s.add_argument("--prefix-cache-mb", type=int, default=None,
                   help="memory for reused prompt prefixes, MiB (default 256; 0 turns it off)")
    add_model_options(s)
    s.set_defaults(func=cmd_serve_rm)

    s = services.add_parser(
        "synth", help="the test-synthesis service (one-seed streams and resumable jobs)",
        description="Serve acecoder.v1.Synthesis (with grpc health and reflection) until "
                    "SIGTERM, then drain. Jobs read and write JSONL under --data-dir; their "
                    "state lives in --state-dir, and jobs that were running when the server "
                    "stopped (or was killed) resume when it starts again.")
    add_listen_options(s, port=50053)
    s.add_argument("--state-dir", default=".acecoder-jobs", metavar="DIR",
                   help="where job state is kept; put it on a persistent volume "
                        "(default .acecoder-jobs)")
    s.add_argument("--data-dir", default=".", metavar="DIR",
                   help="jobs' input and output paths are relative to, and confined to, this "
                        "directory (default: the current one)")
    s.add_argument("--max-jobs", type=int, default=1, help="jobs that run at once (default 1)")
    s.add_argument("--max-inflight", type=int, default=8,
                   help="Synthesize calls that run at once (default 8)")
    s.add_argument("--max-queue", type=int, default=64,
                   help="Synthesize calls that may wait before RESOURCE_EXHAUSTED (default 64)")
    add_synth_options(s)
    s.set_defaults(func=cmd_serve_synth)

    from acecoder.server.rm.config import DEFAULT_MODEL

    s = services.add_parser(
        "all", help="the executor, RM and synthesis services together",
        description="Start the three services as child processes (the RM server and the "
                    "synthesis service use the executor), print where each listens, and run "
                    "until SIGTERM or SIGINT; then stop them in reverse order, each draining, "
                    "and make sure no process is left. If one exits, the others are stopped "
                    "and the exit status is 1. For production, run each service on its own "
                    "(see k8s/).")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--executor-port", type=int, default=50051, help="default 50051 (0: any)")
    s.add_argument("--rm-port", type=int, default=50052, help="default 50052 (0: any)")
    s.add_argument("--synth-port", type=int, default=50053, help="default 50053 (0: any)")
    s.add_argument("--http-port", type=int, default=None,
                   help="the RM server's OpenRLHF gateway on this port (default: off)")
    s.add_argument("--metrics-port-base", type=int, default=None, metavar="P",
                   help="Prometheus metrics of the executor, RM and synthesis services on "
                        "P, P+1 and P+2 (default: off)")
    s.add_argument("--grace", type=float, default=20.0,
                   help="seconds each service may drain after SIGTERM (default 20)")
    s.add_argument("--auth-tokens", default=None, metavar="FILE",
                   help="bearer tokens every service accepts ('NAME TOKEN' per line); the RM "
                        "and synthesis services call the executor with the first")
    s.add_argument("--trust-network", action="store_true",
                   help="let the executor listen beyond loopback without --auth-tokens")
    s.add_argument("--rm-model", default=DEFAULT_MODEL, metavar="PATH|ID",
                   help=f"the RM server's model (default {DEFAULT_MODEL})")
    s.add_argument("--llm", default="local", metavar="URL|local|vllm",
                   help="the synthesis service's LLM (default local: the embedded "
                        "SmolLM2-135M-Instruct in-process)")
    s.add_argument("--llm-model", default=None, help="model name for --llm")
    s.add_argument("--state-dir", default=".acecoder-jobs", metavar="DIR",
                   help="synthesis jobs' state (default .acecoder-jobs)")
    s.add_argument("--data-dir", default=".", metavar="DIR",
                   help="synthesis jobs' input and output paths are confined to it (default .)")
    s.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1),
                   help="executor workers (default: CPU count)")
    s.add_argument("--jail", default="auto",
                   choices=["auto", "firejail", "bubblewrap", "namespaces"],
                   help="the executor's sandbox (default: the first that works here)")
    s.set_defaults(func=cmd_serve_all)


def cmd_serve_executor(args: argparse.Namespace) -> int:
    from acecoder.executor.main import serve
    from acecoder.serving import ServerConfig

    config = executor_config(args)
    server = ServerConfig(host=args.host, port=args.port, metrics_port=args.metrics_port,
                          grace=args.grace, security=listen_security(args, "executor"))
    asyncio.run(serve(config, server))
    return 0


def cmd_serve_rm(args: argparse.Namespace) -> int:
    from acecoder.server.rm.main import RewardServerConfig, serve

    try:
        config = reward_config(args)
        if args.gateway_reward != "rm" and not args.executor:
            raise ValueError(f"--gateway-reward {args.gateway_reward} needs --executor HOST:PORT")
        server = RewardServerConfig(host=args.host, port=args.port, http_port=args.http_port,
                                    http_max_body_mb=args.http_max_body_mb,
                                    http_header_timeout=args.http_header_timeout,
                                    metrics_port=args.metrics_port, grace=args.grace,
                                    security=listen_security(args, "RM server"),
                                    policy_template=args.policy_template,
                                    gateway_reward=args.gateway_reward,
                                    gateway_binary=args.gateway_binary,
                                    gateway_rm_weight=args.gateway_rm_weight,
                                    tests_file=args.tests_file)
    except ValueError as exc:
        print(f"acecoder serve rm: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(config, server))


def cmd_serve_synth(args: argparse.Namespace) -> int:
    from acecoder.server.synth.main import SynthServerConfig, serve
    from acecoder.server.synth.service import SynthServiceConfig

    try:
        config = SynthServiceConfig(synth=synth_config(args), state_dir=Path(args.state_dir),
                                    data_dir=Path(args.data_dir),
                                    max_running_jobs=args.max_jobs,
                                    max_inflight=args.max_inflight, max_queue=args.max_queue)
        server = SynthServerConfig(host=args.host, port=args.port,
                                   metrics_port=args.metrics_port, grace=args.grace,
                                   security=listen_security(args, "synthesis service"))
        llm, proxy = llm_and_proxy(args)
    except ValueError as exc:
        print(f"acecoder serve synth: {exc}", file=sys.stderr)
        return 2
    with executor_target(args) as target:
        return asyncio.run(serve(config, server, llm=llm, proxy=proxy, executor=target,
                                 llm_name=args.llm_model or "embedded:smollm2-135m"))


def cmd_serve_all(args: argparse.Namespace) -> int:
    import signal
    import time

    from acecoder.services import ServiceGroup

    def metrics(offset: int) -> list[str]:
        base = args.metrics_port_base
        return [] if base is None else ["--metrics-port", str(base + offset)]

    listen = ["--host", args.host, "--grace", str(args.grace)]
    if args.auth_tokens:  # every service asks for a token; the RM and synthesis services
        from acecoder.security import server_security  # present the first one to the executor

        tokens = server_security(tokens_file=args.auth_tokens).tokens
        os.environ.setdefault("ACECODER_TOKEN", tokens[0].secret.decode())
        listen += ["--auth-tokens", args.auth_tokens]
    if args.trust_network:
        listen.append("--trust-network")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    group = ServiceGroup()
    try:
        ex = group.start("executor", *listen, "--port", str(args.executor_port),
                         "--workers", str(args.workers), "--jail", args.jail, *metrics(0))
        http = [] if args.http_port is None else ["--http-port", str(args.http_port)]
        rm = group.start("rm", *listen, "--port", str(args.rm_port), "--executor", ex.target,
                         "--model", args.rm_model, *http, *metrics(1), wait_ready=True)
        llm = ["--llm", args.llm] + (["--llm-model", args.llm_model] if args.llm_model else [])
        synth = group.start("synth", *listen, "--port", str(args.synth_port), "--executor",
                            ex.target, *llm, "--state-dir", args.state_dir, "--data-dir",
                            args.data_dir, *metrics(2))
        group.say(f"acecoder all listening: executor on {ex.target}, rm on {rm.target}, "
                  f"synth on {synth.target}")
        group.await_ready(rm)
        group.say("acecoder all ready")
        while not stopping:
            dead = group.exited()
            if dead is not None:
                print(f"acecoder serve all: the {dead.name} server exited with code "
                      f"{dead.proc.returncode}; stopping the others", file=sys.stderr)
                break
            time.sleep(0.2)
    except RuntimeError as exc:
        print(f"acecoder serve all: {exc}", file=sys.stderr)
    codes = group.stop(grace=args.grace + 10)
    clean = stopping and all(c == 0 for c in codes.values()) and not group.leftovers
    group.say("acecoder all stopped: " + ", ".join(f"{k} exit {v}" for k, v in codes.items())
              + (f"; killed stragglers: {group.leftovers}" if group.leftovers else ""))
    return 0 if clean else 1
