"""`acecoder serve executor|rm|synth|all`: the services."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from .common import (
    EXECUTOR,
    REWARD,
    SERVER,
    Default,
    add_executor_options,
    add_jail_option,
    add_listen_options,
    add_model_options,
    executor_config,
    executor_target,
    listen_security,
    reward_config,
)
from .synth import add_synth_options, llm_and_proxy, synth_config

RM_SERVER = "acecoder.server.rm.main:RewardServerConfig"
SYNTH_SERVER = "acecoder.server.synth.main:SynthServerConfig"
SYNTH_SERVICE = "acecoder.server.synth.service:SynthServiceConfig"


def register(sub: Any) -> None:
    """`serve` and its services."""
    p = sub.add_parser("serve", help="run a service",
                       description="Run one of acecoder's gRPC services until SIGTERM.")
    services = p.add_subparsers(dest="service", metavar="SERVICE", required=True)
    s = services.add_parser("executor", help="the sandboxed test-execution service",
                            description="Serve acecoder.v1.Executor (with grpc health and "
                                        "reflection), and optionally SandboxFusion's HTTP API "
                                        "(POST /run_code, for verl), until SIGTERM, then drain.")
    add_listen_options(s, config=SERVER)
    s.add_argument("--http-port", type=int, default=None,
                   help="also answer SandboxFusion's POST /run_code (and the batched POST "
                        "/acecoder/v1/run_tests) on this port, with the gRPC port's TLS and "
                        "tokens; needs acecoder[http] (default: off)")
    add_http_limits(s)
    s.add_argument("--max-queue", type=int, default=Default(EXECUTOR, "max_queue"),
                   help="requests that may wait for a worker before RESOURCE_EXHAUSTED "
                        "(default %(default)s)")
    s.add_argument("--timeout", type=float, default=Default(EXECUTOR, "default_timeout"),
                   metavar="S", help="default time limit per test, seconds (default %(default)s)")
    add_executor_options(s)
    s.set_defaults(func=cmd_serve_executor)

    s = services.add_parser(
        "rm", help="the AceCode-RM scoring service",
        description="Serve acecoder.v1.RewardModel (with grpc health and reflection), and "
                    "optionally the OpenRLHF-compatible HTTP gateway (POST /get_reward), until "
                    "SIGTERM, then drain. Health stays NOT_SERVING while the model loads.")
    add_listen_options(s, config=RM_SERVER)
    s.add_argument("--http-port", type=int, default=None,
                   help="serve the OpenRLHF gateway on this port (default: off)")
    add_http_limits(s)
    s.add_argument("--policy-template", default=Default(RM_SERVER, "policy_template"),
                   metavar="auto|chatml|llama3|DIR",
                   help="how the gateway splits a policy's query into question and response "
                        "(default %(default)s: ChatML, then Llama-3)")
    s.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="executor service for Rerank requests that carry tests, and for the "
                        "gateway's rule rewards")
    s.add_argument("--gateway-reward", default=Default(RM_SERVER, "gateway_reward"),
                   choices=["rm", "rule", "mix"],
                   help="the gateway's reward: rm (the model's score, default), rule (the "
                        "executor's pass rate on the tests in each sample's label), or mix")
    s.add_argument("--gateway-binary", action="store_true",
                   help="rule/mix: 1.0 only when every test passes (AceCoder's RL reward)")
    s.add_argument("--gateway-rm-weight", type=float,
                   default=Default(RM_SERVER, "gateway_rm_weight"),
                   help="mix: the weight of the RM's calibrated probability; the rule "
                        "reward gets the rest (default %(default)s)")
    s.add_argument("--tests-file", default=None, metavar="RECORDS.jsonl",
                   help="AceCode-87K records: a label may name a record's id instead of "
                        "carrying its tests")
    s.add_argument("--max-batch-tokens", type=int, default=Default(REWARD, "max_batch_tokens"),
                   help="tokens one forward may compute (default %(default)s)")
    s.add_argument("--max-wait-ms", type=float, default=Default(REWARD, "max_wait_ms"),
                   help="how long a free lane waits for more items (default %(default)s)")
    s.add_argument("--max-queue", type=int, default=Default(REWARD, "max_queue"),
                   help="items that may wait before RESOURCE_EXHAUSTED (default %(default)s)")
    s.add_argument("--prefix-cache-mb", type=int, default=Default(REWARD, "prefix_cache_mb"),
                   help="memory for reused prompt prefixes, MiB (default %(default)s; 0 turns "
                        "it off)")
    s.add_argument("--engine", default=Default(REWARD, "engine"),
                   choices=["auto", "packed", "batched"],
                   help="transformers backend: how shared prefixes are reused: packed (new "
                        "tokens of several items in one row), batched (responses in one padded "
                        "forward), auto: packed on CPU, batched on GPU (default %(default)s)")
    add_model_options(s)
    s.set_defaults(func=cmd_serve_rm)

    s = services.add_parser(
        "synth", help="the test-synthesis service (one-seed streams and resumable jobs)",
        description="Serve acecoder.v1.Synthesis (with grpc health and reflection) until "
                    "SIGTERM, then drain. Jobs read and write JSONL under --data-dir; their "
                    "state lives in --state-dir, and jobs that were running when the server "
                    "stopped (or was killed) resume when it starts again.")
    add_listen_options(s, config=SYNTH_SERVER)
    s.add_argument("--state-dir", default=Default(SYNTH_SERVICE, "state_dir", convert=str),
                   metavar="DIR", help="where job state is kept; put it on a persistent volume "
                                       "(default %(default)s)")
    s.add_argument("--data-dir", default=Default(SYNTH_SERVICE, "data_dir", convert=str),
                   metavar="DIR",
                   help="jobs' input and output paths are relative to, and confined to, this "
                        "directory (default: the current one)")
    s.add_argument("--max-jobs", type=int, default=Default(SYNTH_SERVICE, "max_running_jobs"),
                   help="jobs that run at once (default %(default)s)")
    s.add_argument("--max-inflight", type=int, default=Default(SYNTH_SERVICE, "max_inflight"),
                   help="Synthesize calls that run at once (default %(default)s)")
    s.add_argument("--max-queue", type=int, default=Default(SYNTH_SERVICE, "max_queue"),
                   help="Synthesize calls that may wait before RESOURCE_EXHAUSTED (default "
                        "%(default)s)")
    add_synth_options(s)
    s.set_defaults(func=cmd_serve_synth)

    s = services.add_parser(
        "all", help="the executor, RM and synthesis services together",
        description="Start the three services as child processes (the RM server and the "
                    "synthesis service use the executor), print where each listens, and run "
                    "until SIGTERM or SIGINT; then stop them in reverse order, each draining, "
                    "and make sure no process is left. If one exits, the others are stopped "
                    "and the exit status is 1. For production, run each service on its own "
                    "(see k8s/).")
    s.add_argument("--host", default=Default(SERVER, "host"),
                   help="address to listen on (default %(default)s)")
    s.add_argument("--executor-port", type=int, default=Default(SERVER, "port"),
                   help="default %(default)s (0: any)")
    s.add_argument("--rm-port", type=int, default=Default(RM_SERVER, "port"),
                   help="default %(default)s (0: any)")
    s.add_argument("--synth-port", type=int, default=Default(SYNTH_SERVER, "port"),
                   help="default %(default)s (0: any)")
    s.add_argument("--http-port", type=int, default=None,
                   help="the RM server's OpenRLHF gateway on this port (default: off)")
    s.add_argument("--executor-http-port", type=int, default=None, metavar="P",
                   help="the executor's SandboxFusion-compatible POST /run_code on this port, "
                        "for verl (default: off)")
    s.add_argument("--metrics-port-base", type=int, default=None, metavar="P",
                   help="Prometheus metrics of the executor, RM and synthesis services on "
                        "P, P+1 and P+2 (default: off)")
    s.add_argument("--grace", type=float, default=Default(SERVER, "grace"),
                   help="seconds each service may drain after SIGTERM (default %(default)s)")
    s.add_argument("--auth-tokens", default=None, metavar="FILE",
                   help="bearer tokens every service accepts ('NAME TOKEN' per line); the RM "
                        "and synthesis services call the executor with the first")
    s.add_argument("--trust-network", action="store_true",
                   help="let the executor listen beyond loopback without --auth-tokens")
    s.add_argument("--rm-model", default=Default(REWARD, "model"), metavar="PATH|ID",
                   help="the RM server's model (default %(default)s)")
    s.add_argument("--llm", default="local", metavar="URL|local|vllm",
                   help="the synthesis service's LLM (default local: the embedded "
                        "SmolLM2-135M-Instruct in-process)")
    s.add_argument("--llm-model", default=None, help="model name for --llm")
    s.add_argument("--state-dir", default=Default(SYNTH_SERVICE, "state_dir", convert=str),
                   metavar="DIR", help="synthesis jobs' state (default %(default)s)")
    s.add_argument("--data-dir", default=Default(SYNTH_SERVICE, "data_dir", convert=str),
                   metavar="DIR",
                   help="synthesis jobs' input and output paths are confined to it (default "
                        "%(default)s)")
    s.add_argument("--workers", type=int, default=Default(EXECUTOR, "workers"),
                   help="executor workers (default: CPU count)")
    add_jail_option(s, "the executor's sandbox (default: the first that works here)")
    s.set_defaults(func=cmd_serve_all)


def add_http_limits(p: argparse.ArgumentParser) -> None:
    """What bounds an HTTP port's clients (the RM gateway's, the executor's /run_code)."""
    p.add_argument("--http-max-body-mb", type=float, default=Default(SERVER, "http_max_body_mb"),
                   metavar="MB",
                   help="largest request body the HTTP port reads; larger is refused with 413 "
                        "from its Content-Length, unread (default %(default)s)")
    p.add_argument("--http-header-timeout", type=float,
                   default=Default(SERVER, "http_header_timeout"), metavar="S",
                   help="seconds a connection has to send a request's headers before the HTTP "
                        "port closes it (default %(default)s)")


def cmd_serve_executor(args: argparse.Namespace) -> int:
    from acecoder.executor.main import serve
    from acecoder.serving import ServerConfig

    config = executor_config(args)
    server = ServerConfig(host=args.host, port=args.port, metrics_port=args.metrics_port,
                          grace=args.grace, security=listen_security(args, "executor"),
                          http_port=args.http_port, http_max_body_mb=args.http_max_body_mb,
                          http_header_timeout=args.http_header_timeout)
    if args.http_port is not None:  # before any port is bound: say which extra is missing
        from acecoder.http_server import require

        require("http")
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
        ex_http = ([] if args.executor_http_port is None
                   else ["--http-port", str(args.executor_http_port)])
        ex = group.start("executor", *listen, "--port", str(args.executor_port),
                         "--workers", str(args.workers), "--jail", args.jail, *ex_http,
                         *metrics(0))
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
