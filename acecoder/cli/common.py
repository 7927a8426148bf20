"""Options and helpers more than one command family uses: executor and model options, where
and how a server listens, running an offline JSONL job, an executor for a command's duration."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from acecoder.jsonl import InputError


def executor_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
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


def add_executor_options(p: argparse.ArgumentParser) -> None:
    import os

    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1),
                   help="jailed worker processes, about one core each (default: CPU count)")
    p.add_argument("--jail", default="auto",
                   choices=["auto", "firejail", "bubblewrap", "namespaces"],
                   help="sandbox for the workers (default: the first that works here)")
    p.add_argument("--memory-mb", type=int, default=None,
                   help="address-space limit per program, MiB (default 1024)")


def add_listen_options(p: argparse.ArgumentParser, *, port: int) -> None:
    """What every `acecoder serve` command takes: where to listen, metrics, drain time."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=port,
                   help=f"gRPC port; 0 picks one (default {port})")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this port (default: off)")
    p.add_argument("--grace", type=float, default=20.0,
                   help="seconds to finish admitted work after SIGTERM (default 20)")
    g = p.add_argument_group("security", "TLS, authentication and rate limits (see README, "
                             "\"Security\"); clients take ACECODER_TLS_CA, ACECODER_TLS_CERT, "
                             "ACECODER_TLS_KEY and ACECODER_TOKEN from the environment")
    g.add_argument("--tls-cert", default=None, metavar="PEM", help="server certificate (TLS)")
    g.add_argument("--tls-key", default=None, metavar="PEM", help="its private key")
    g.add_argument("--tls-client-ca", default=None, metavar="PEM",
                   help="mutual TLS: accept only clients with a certificate this CA signed")
    g.add_argument("--auth-tokens", default=None, metavar="FILE",
                   help="bearer tokens accepted, one per line ('NAME TOKEN' or 'TOKEN'; lines "
                        "starting with # are comments); default: ACECODER_AUTH_TOKENS "
                        "(NAME=TOKEN,...) if set, else none asked")
    g.add_argument("--rate-limit", type=float, default=None, metavar="R",
                   help="items per second per client (token, certificate or address), shared "
                        "by the gRPC and HTTP ports: a call costs the items it carries (score "
                        "items, batch programs, rerank candidates, stream messages); over it: "
                        "RESOURCE_EXHAUSTED, HTTP 429 (default: no limit)")
    g.add_argument("--rate-burst", type=int, default=None, metavar="B",
                   help="items a client may send at once (default: 2 s worth)")
    g.add_argument("--auth-failures", type=float, default=None, metavar="N",
                   help="failed authentications a peer address may make a minute; past "
                        "them all its calls are refused until the budget refills (default 30)")
    g.add_argument("--health-port", type=int, default=None,
                   help="also serve the health service alone, plaintext, on this port (for "
                        "kubelet's gRPC probes when the main port speaks TLS)")
    g.add_argument("--trust-network", action="store_true",
                   help="serve beyond loopback without authentication (the executor refuses "
                        "to otherwise: it runs code for whoever reaches it)")


def listen_security(args: argparse.Namespace, what: str):  # type: ignore[no-untyped-def]
    """ServerSecurity of a serve command; the executor refuses to be open beyond loopback."""
    import logging

    from acecoder.security import server_security

    security = server_security(
        tls_cert=args.tls_cert, tls_key=args.tls_key, client_ca=args.tls_client_ca,
        tokens_file=args.auth_tokens, rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        health_port=args.health_port, trust_network=args.trust_network,
        auth_failures=args.auth_failures)
    if what == "executor":
        security.check_listen(args.host, what)
    else:
        try:
            security.check_listen(args.host, what)
        except ValueError:
            logging.getLogger("acecoder.security").warning(
                "the %s listens on %s with no authentication: anyone who reaches it may use "
                "it (give --auth-tokens or --tls-client-ca, or keep it behind a "
                "NetworkPolicy)", what, args.host)
    return security


def offline_job(command: str, job: Any, done: str) -> int:
    """Run an offline JSONL job; bad input is exit status 2 with a message, not a traceback.
    `done` is formatted with the job's counts."""
    try:
        counts = asyncio.run(job)
    except InputError as exc:
        print(f"acecoder {command}: bad input:\n{exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"acecoder {command}: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"acecoder {command}: {exc}", file=sys.stderr)
        return 2
    print(done.format(**counts), file=sys.stderr)
    return 0


def reward_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from acecoder.server.rm.config import RewardConfig

    kw = {"model": args.model, "backend": args.backend, "device": args.device,
          "dtype": args.dtype, "max_length": args.max_length, "lanes": args.lanes}
    for name in ("max_batch_tokens", "max_wait_ms", "max_queue", "prefix_cache_mb", "executor"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    return RewardConfig(**kw)


def add_model_options(p: argparse.ArgumentParser) -> None:
    from acecoder.server.rm.config import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, metavar="PATH|ID",
                   help="checkpoint directory, hub id, or embedded:smollm2-135m / "
                        f"embedded:minilm-l6 (default {DEFAULT_MODEL})")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm"],
                   help="library that runs the model (default transformers)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", default="auto",
                   choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights' dtype (default: float32 on CPU, bfloat16 on GPU)")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per item; longer items lose question tokens from the left")
    p.add_argument("--lanes", type=int, default=0,
                   help="batches computed at once (default: one per core on CPU, one on GPU)")


@contextlib.contextmanager
def executor_target(args: argparse.Namespace) -> Iterator[str]:
    """--executor HOST:PORT, or an executor server started here for the command's duration."""
    if args.executor is not None:
        yield args.executor
        return
    import signal

    from acecoder.services import start_executor

    server, target = start_executor(args.workers, args.jail)
    try:
        yield target
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
