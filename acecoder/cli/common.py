"""Options and helpers more than one command family uses: flag defaults read from the config
dataclasses, --input/--output/--quiet, executor and model options, where and how a server
listens, running an offline JSONL job, an executor for a command's duration."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from acecoder.jsonl import InputError

EXECUTOR = "acecoder.executor.config:ExecutorConfig"
REWARD = "acecoder.server.rm.config:RewardConfig"
SERVER = "acecoder.serving:ServerConfig"
"""Where the defaults of the flags live, as `default_of` reads them."""


# -- defaults, written once: in the config -----------------------------------------------------

def default_of(owner: Any, name: str) -> Any:
    """The default of field `name` of a config dataclass, or of parameter `name` of a function;
    `owner` may be the object or "module:qualname" (imported now)."""
    if isinstance(owner, str):
        module, _, attr = owner.partition(":")
        owner = importlib.import_module(module)
        for part in attr.split("."):
            owner = getattr(owner, part)
    if dataclasses.is_dataclass(owner):
        for f in dataclasses.fields(owner):
            if f.name == name and f.default is not dataclasses.MISSING:
                return f.default
            if f.name == name and f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    else:
        param = inspect.signature(owner).parameters.get(name)
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    raise ValueError(f"{getattr(owner, '__qualname__', owner)} has no default for {name!r}")


def shown(value: Any) -> str:
    """A default as help prints it: 3 for 3.0, 1e-5 for 1e-05."""
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", repr(value))
    return str(value)


class Default:
    """A flag's default, read from its config (`default_of`) only when needed: `Parser` puts
    the value in the parsed namespace, and help shows it where the text says %(default)s. So
    building the parser imports no config (a trainer's imports torch), and parsing imports
    only the chosen command's. `shown_only`: the namespace gets None, for flags whose absence
    must stay visible (a trainer's --preset fills them); help still shows the config's
    value."""

    def __init__(self, owner: Any, name: str, *, convert: Callable[[Any], Any] | None = None,
                 shown_only: bool = False) -> None:
        self.owner = owner
        self.name = name
        self.convert = convert
        self.shown_only = shown_only

    @property
    def value(self) -> Any:
        value = default_of(self.owner, self.name)
        return value if self.convert is None else self.convert(value)

    def parsed(self) -> Any:
        return None if self.shown_only else self.value

    def __str__(self) -> str:
        return shown(self.value)

    def __float__(self) -> float:  # for help texts that say %(default).1f
        return float(self.value)

    def __repr__(self) -> str:
        return f"Default({self.owner!r}, {self.name!r})"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose flags may default to a `Default` (its subparsers are Parsers
    too): the namespace it returns holds the value."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        for key, value in vars(parsed).items():
            if isinstance(value, Default):
                setattr(parsed, key, value.parsed())
        return parsed, extras


def add_io(p: argparse.ArgumentParser) -> None:
    """--input and --output of an offline JSONL command."""
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")


def add_quiet(p: argparse.ArgumentParser) -> None:
    """--quiet, of every command that shows a progress bar."""
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# -- options of more than one command ------------------------------------------------------------


def executor_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The ExecutorConfig of a command's executor flags; a limit raised past its config's
    maximum raises that maximum too."""
    from acecoder.executor.config import ExecutorConfig

    kw = {"workers": args.workers, "jail": args.jail}
    if getattr(args, "max_queue", None) is not None:
        kw["max_queue"] = args.max_queue
    if getattr(args, "timeout", None) is not None:
        kw["default_timeout"] = args.timeout
        kw["max_timeout"] = max(default_of(ExecutorConfig, "max_timeout"), args.timeout)
    if getattr(args, "memory_mb", None) is not None:
        kw["default_memory_mb"] = args.memory_mb
        kw["max_memory_mb"] = max(default_of(ExecutorConfig, "max_memory_mb"), args.memory_mb)
    return ExecutorConfig(**kw)


def add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=Default(EXECUTOR, "workers"),
                   help="jailed worker processes, about one core each (default: CPU count)")
    add_jail_option(p, "sandbox for the workers (default: the first that works here)")
    p.add_argument("--memory-mb", type=int, default=Default(EXECUTOR, "default_memory_mb"),
                   help="address-space limit per program, MiB (default %(default)s)")


def add_jail_option(p: argparse.ArgumentParser, help: str) -> None:
    from acecoder.executor.jail import JAILS

    p.add_argument("--jail", default=Default(EXECUTOR, "jail"), choices=["auto", *JAILS],
                   help=help)


def add_listen_options(p: argparse.ArgumentParser, *, config: str) -> None:
    """What every `acecoder serve` command takes: where to listen, metrics, drain time;
    defaults from `config`, the server's ServerConfig ("module:qualname")."""
    p.add_argument("--host", default=Default(config, "host"),
                   help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=Default(config, "port"),
                   help="gRPC port; 0 picks one (default %(default)s)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this port (default: off)")
    p.add_argument("--grace", type=float, default=Default(config, "grace"),
                   help="seconds to finish admitted work after SIGTERM (default %(default)s)")
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
    g.add_argument("--auth-failures", type=float,
                   default=Default("acecoder.security:ServerSecurity", "auth_failures"),
                   metavar="N",
                   help="failed authentications a peer address may make a minute; past "
                        "them all its calls are refused until the budget refills (default "
                        "%(default)s)")
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
    for name in ("max_batch_tokens", "max_wait_ms", "max_queue", "prefix_cache_mb", "engine",
                 "executor", "calibration"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    return RewardConfig(**kw)


def add_model_options(p: argparse.ArgumentParser) -> None:
    from acecoder.server.rm.config import BACKENDS

    p.add_argument("--model", default=Default(REWARD, "model"), metavar="PATH|ID",
                   help="checkpoint directory, hub id, or embedded:smollm2-135m / "
                        "embedded:minilm-l6 (default %(default)s)")
    p.add_argument("--backend", default=Default(REWARD, "backend"), choices=BACKENDS,
                   help="library that runs the model (default %(default)s)")
    p.add_argument("--device", default=Default(REWARD, "device"),
                   help="cpu or cuda[:N] (default %(default)s)")
    p.add_argument("--dtype", default=Default(REWARD, "dtype"),
                   choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights' dtype (default: float32 on CPU, bfloat16 on GPU)")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per item; longer items lose question tokens from the left")
    p.add_argument("--lanes", type=int, default=Default(REWARD, "lanes"),
                   help="batches computed at once (default: one per core on CPU, one on GPU)")
    p.add_argument("--calibration", default=None, metavar="FILE.json",
                   help="the model's calibration (`acecoder rm calibrate` writes one; default: "
                        "calibration.json beside the checkpoint, else the embedded model's "
                        "own, else none)")


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
