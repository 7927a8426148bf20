"""The `acecoder` command. Each service adds its subcommands here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from acecoder.jsonl import InputError

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


def _add_listen_options(p: argparse.ArgumentParser, *, port: int) -> None:
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


def _server_security(args: argparse.Namespace, what: str):  # type: ignore[no-untyped-def]
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


def _add_synth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm", default="local", metavar="URL|local|vllm",
                   help="OpenAI-compatible API root (e.g. http://localhost:8000/v1), 'local' "
                        "(transformers in-process) or 'vllm' (vLLM in-process) (default local)")
    p.add_argument("--llm-model", default=None,
                   help="model name for the API, or the checkpoint for local/vllm (default: "
                        "the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--proxy", default=None, metavar="URL|local|vllm|reference",
                   help="where the proxy model runs (default: same as --llm); 'reference': "
                        "each seed's own program is the proxy solution")
    p.add_argument("--proxy-model", default=None, help="proxy model (default: --llm-model)")
    p.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="executor service (default: start one here)")
    p.add_argument("--tests", type=int, default=20, help="tests to ask for per question")
    p.add_argument("--stages", default="rewrite,decontaminate,filter", metavar="LIST",
                   help="which of stages 1-3 run (default all: rewrite,decontaminate,filter); "
                        "without rewrite, seeds bring their own \"tests\"")
    p.add_argument("--min-passed", type=int, default=4,
                   help="drop a question whose proxy passes fewer tests (default 4: AceCoder)")
    p.add_argument("--min-kept", type=int, default=5,
                   help="drop a question with fewer tests left (default 5: AceCoder)")
    p.add_argument("--decontam-threshold", type=float, default=0.5, metavar="F",
                   help="drop a question whose 10-gram overlap with a benchmark prompt exceeds "
                        "this (default 0.5)")
    p.add_argument("--max-tokens", type=int, default=2048, help="LLM answer limit, tokens")
    p.add_argument("--benchmark", action="append", default=[], metavar="FILE.jsonl",
                   help="more benchmark prompts to decontaminate against (repeatable)")
    _add_executor_options(p)


def _offline(command: str, job: Any, done: str) -> int:
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


def cmd_exec(args: argparse.Namespace) -> int:
    from acecoder.executor import offline

    job = offline.run(Path(args.input), Path(args.output), _executor_config(args),
                      timeout=args.timeout, progress=not args.quiet)
    return _offline("exec", job, "{ran} programs run, {skipped} already in "
                    f"{args.output}, {{invalid}} invalid")


def cmd_serve_executor(args: argparse.Namespace) -> int:
    from acecoder.executor.main import serve
    from acecoder.serving import ServerConfig

    config = _executor_config(args)
    server = ServerConfig(host=args.host, port=args.port, metrics_port=args.metrics_port,
                          grace=args.grace, security=_server_security(args, "executor"))
    asyncio.run(serve(config, server))
    return 0


def _reward_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from acecoder.server.rm.config import RewardConfig

    kw = {"model": args.model, "backend": args.backend, "device": args.device,
          "dtype": args.dtype, "max_length": args.max_length, "lanes": args.lanes}
    for name in ("max_batch_tokens", "max_wait_ms", "max_queue", "prefix_cache_mb", "executor"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    return RewardConfig(**kw)


def _add_model_options(p: argparse.ArgumentParser) -> None:
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


def cmd_serve_rm(args: argparse.Namespace) -> int:
    from acecoder.server.rm.main import RewardServerConfig, serve

    try:
        config = _reward_config(args)
        if args.gateway_reward != "rm" and not args.executor:
            raise ValueError(f"--gateway-reward {args.gateway_reward} needs --executor HOST:PORT")
        server = RewardServerConfig(host=args.host, port=args.port, http_port=args.http_port,
                                    http_max_body_mb=args.http_max_body_mb,
                                    http_header_timeout=args.http_header_timeout,
                                    metrics_port=args.metrics_port, grace=args.grace,
                                    security=_server_security(args, "RM server"),
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
        config = SynthServiceConfig(synth=_synth_config(args), state_dir=Path(args.state_dir),
                                    data_dir=Path(args.data_dir),
                                    max_running_jobs=args.max_jobs,
                                    max_inflight=args.max_inflight, max_queue=args.max_queue)
        server = SynthServerConfig(host=args.host, port=args.port,
                                   metrics_port=args.metrics_port, grace=args.grace,
                                   security=_server_security(args, "synthesis service"))
        llm, proxy = _llm_and_proxy(args)
    except ValueError as exc:
        print(f"acecoder serve synth: {exc}", file=sys.stderr)
        return 2
    with _executor_target(args) as target:
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


def cmd_score(args: argparse.Namespace) -> int:
    from acecoder.server.rm import offline

    job = offline.run(Path(args.input), Path(args.output), _reward_config(args),
                      server=args.server, progress=not args.quiet)
    return _offline("score", job, "{scored} items scored, {skipped} already in "
                    f"{args.output}, {{invalid}} invalid")


def cmd_rerank(args: argparse.Namespace) -> int:
    from acecoder.server.rm import rerank

    config = _reward_config(args)
    job = rerank.run(Path(args.input), Path(args.output), config, server=args.server,
                     progress=not args.quiet, budget=args.budget, synth=args.synth,
                     concurrency=args.concurrency)
    return _offline("rerank", job, "{ranked} questions ranked ({partial} cut short by the "
                    f"budget), {{skipped}} already in {args.output}, {{invalid}} invalid")


def cmd_rm_convert(args: argparse.Namespace) -> int:
    from acecoder.server.rm.convert import to_seq_cls

    try:
        out = to_seq_cls(args.model, Path(args.output))
    except ValueError as exc:
        print(f"acecoder rm convert: {exc}", file=sys.stderr)
        return 2
    print(f"wrote a one-label sequence classifier to {out}", file=sys.stderr)
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from acecoder.server.synth import offline
    from acecoder.server.synth.pairs import PairRule

    rule = PairRule(min_chosen=args.min_chosen, min_rejected=args.min_rejected,
                    min_gap=args.min_gap, same_model=not args.across_models,
                    max_per_question=args.max_per_question)

    async def job() -> dict[str, int]:
        return offline.run_pairs(Path(args.input), Path(args.output), rule,
                                 progress=not args.quiet)

    return _offline("pairs", job(), "{pairs} pairs from {questions} questions "
                    "({without_pairs} without any), {written} written")


def cmd_hard(args: argparse.Namespace) -> int:
    from acecoder.server.synth import offline

    async def job() -> dict[str, int]:
        return offline.run_hard(Path(args.input), Path(args.output), progress=not args.quiet)

    return _offline("hard", job(), "{kept} of {questions} questions kept, {written} written")


@contextlib.contextmanager
def _executor_target(args: argparse.Namespace) -> Iterator[str]:
    """--executor HOST:PORT, or an executor server started here for the command's duration."""
    if args.executor is not None:
        yield args.executor
        return
    import signal

    from acecoder.executor.demo import start_server

    server, target = start_server(args.workers, args.jail)
    try:
        yield target
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def _chat(where: str, model: str | None, max_tokens: int):  # type: ignore[no-untyped-def]
    from acecoder.server.synth.backends import make_chat

    return make_chat(where, model, max_tokens=max_tokens)


def _llm_and_proxy(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The rewrite LLM and the proxy: one object when they are the same model."""
    llm = _chat(args.llm, args.llm_model, args.max_tokens)
    if args.proxy in (None, args.llm, "reference") and args.proxy_model in (None, args.llm_model):
        return llm, llm
    return llm, _chat(args.proxy or args.llm, args.proxy_model or args.llm_model,
                      args.max_tokens)


def _synth_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from acecoder.server.synth import pipeline

    from acecoder.server.synth.filter import FilterRule

    return pipeline.SynthConfig(n_tests=args.tests,
                                benchmark_files=tuple(Path(b) for b in args.benchmark),
                                stages=_stages(args), proxy_reference=args.proxy == "reference",
                                rule=FilterRule(min_passed=args.min_passed,
                                                min_kept=args.min_kept),
                                decontam_threshold=args.decontam_threshold)


def _stages(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(s.strip() for s in args.stages.split(",") if s.strip())


def _synth_on_server(args: argparse.Namespace) -> int:
    """Submit the input as a job to `acecoder serve synth` and follow it to the end."""
    import grpc

    from acecoder.clients import SynthesisClient
    from acecoder.clients.synthesis import state_name
    from acecoder.jsonl import Progress
    from acecoder.server.synth import pipeline

    with SynthesisClient(args.server) as client:
        try:
            job = client.submit_job(args.input, args.output, job_id=args.job_id or "",
                                    n_tests=args.tests, stages=_stages(args),
                                    proxy_reference=True if args.proxy == "reference" else None,
                                    min_passed=args.min_passed, min_kept=args.min_kept,
                                    decontam_threshold=args.decontam_threshold)
        except grpc.RpcError as exc:
            print(f"acecoder synth: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 2
        print(f"job {job.job_id} on {args.server}: {job.input_path} -> {job.output_path}",
              file=sys.stderr)
        bar: list[Progress] = []

        def show(j: Any) -> None:
            if j.seeds and not bar:
                bar.append(Progress(j.seeds, not args.quiet, unit="q", what="questions"))
            if bar and j.done > bar[0].done:
                bar[0].update(j.done - bar[0].done)

        try:
            job = client.wait_job(job.job_id, on_update=show)
        except KeyboardInterrupt:
            print(f"\njob {job.job_id} goes on on the server; follow it again with "
                  f"--job-id {job.job_id}", file=sys.stderr)
            return 130
        finally:
            if bar:
                bar[0].close()
    state = state_name(job.state)
    if state != "SUCCEEDED":
        print(f"acecoder synth: job {job.job_id} {state}: {job.error}", file=sys.stderr)
        return 1
    report = {"seeds": job.seeds, "skipped": 0, "kept": job.kept, "dropped": dict(job.dropped),
              "tests_in": job.tests_in, "tests_kept": job.tests_kept,
              "tests_rejected": dict(job.tests_rejected)}
    print(f"{job.kept} questions kept", file=sys.stderr)
    print(pipeline.format_report(report), file=sys.stderr)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from acecoder.clients import AsyncExecutorClient
    from acecoder.server.synth import pipeline

    if args.server is not None:
        return _synth_on_server(args)
    config = _synth_config(args)
    llm, proxy = _llm_and_proxy(args)
    report: dict[str, object] = {}

    async def job(target: str) -> dict[str, int]:
        async with AsyncExecutorClient(target, timeout=600) as ex:
            try:
                report.update(await pipeline.run(
                    Path(args.input), Path(args.output), llm=llm, proxy=proxy, executor=ex,
                    config=config, progress=not args.quiet))
            finally:
                await llm.close()
                await proxy.close()
        return {"kept": int(report.get("kept", 0))}  # type: ignore[call-overload]

    with _executor_target(args) as target:
        code = _offline("synth", job(target), "{kept} questions kept")
    if code == 0 and report:
        print(pipeline.format_report(report), file=sys.stderr)
    return code


def cmd_sample(args: argparse.Namespace) -> int:
    from acecoder.clients import AsyncExecutorClient
    from acecoder.server.synth import sample

    policy = _chat(args.llm, args.llm_model, args.max_tokens)

    async def job(target: str) -> dict[str, int]:
        async with AsyncExecutorClient(target, timeout=600) as ex:
            try:
                return await sample.run(
                    Path(args.input), Path(args.output), policy=policy,
                    model_name=args.llm_model or "embedded:smollm2-135m", k=args.k,
                    executor=ex, temperature=args.temperature, progress=not args.quiet)
            finally:
                await policy.close()

    with _executor_target(args) as target:
        return _offline("sample", job(target), "{sampled} questions sampled, {skipped} already "
                        f"in {args.output}")


def cmd_train_rm(args: argparse.Namespace) -> int:
    from acecoder.trainer.recipes import rm_bt

    config = rm_bt.RMTrainConfig.from_preset(
        Path(args.preset) if args.preset else None, data=args.data, output=args.output,
        model=args.model, eval_data=args.eval_data, eval_fraction=args.eval_fraction,
        epochs=args.epochs, lr=args.lr, warmup_ratio=args.warmup_ratio,
        global_batch=args.global_batch, micro_batch=args.micro_batch,
        max_length=args.max_length, zero_stage=args.zero, dtype=args.dtype, device=args.device,
        gradient_checkpointing=True if args.gradient_checkpointing else None,
        head_only=True if args.head_only else None, eval_every=args.eval_every,
        seed=args.seed, deepspeed_config=args.deepspeed_config, progress=not args.quiet)
    for path in (config.data, config.eval_data):
        if path is not None and not path.is_file():
            print(f"acecoder train rm: no such file: {path}", file=sys.stderr)
            return 2
    try:
        result = rm_bt.run(config)
    except InputError as exc:
        print(f"acecoder train rm: bad input:\n{exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        acc = result.get("accuracy/eval")
        print(f"trained {result['steps']} steps in {result['seconds']:.0f} s; held-out pairwise "
              f"accuracy {acc if acc is None else f'{acc:.3f}'} (chance 0.5); saved to "
              f"{config.output}", file=sys.stderr)
    return 0


def cmd_train_rl(args: argparse.Namespace) -> int:
    from acecoder.trainer.recipes import reinforce_pp

    config = reinforce_pp.RLTrainConfig.from_preset(
        Path(args.preset) if args.preset else None, data=args.data, output=args.output,
        model=args.model, limit=args.limit, reward=args.reward, binary=args.binary,
        rm_weight=args.rm_weight, executor=args.executor, rm=args.rm,
        reward_deadline=args.reward_deadline, test_timeout=args.test_timeout, steps=args.steps,
        rollout_batch=args.rollout_batch, samples_per_prompt=args.samples_per_prompt,
        train_batch=args.train_batch, micro_batch=args.micro_batch,
        generate_batch=args.generate_batch, max_prompt_length=args.max_prompt_length,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, lr=args.lr,
        warmup_ratio=args.warmup_ratio, kl_coef=args.kl_coef, kl_estimator=args.kl_estimator,
        estimator=args.estimator, eps_clip=args.eps_clip, update_epochs=args.update_epochs,
        zero_stage=args.zero, dtype=args.dtype, device=args.device,
        gradient_checkpointing=True if args.gradient_checkpointing else None,
        overlap=False if args.no_overlap else None, rollout_engine=args.rollout_engine,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints, resume=False if args.no_resume else None,
        seed=args.seed, deepspeed_config=args.deepspeed_config,
        progress=False if args.quiet else None)
    try:
        result = reinforce_pp.run(config)
    except InputError as exc:
        print(f"acecoder train rl: bad input:\n{exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        last = result["history"][-1] if result["history"] else {}
        totals = result["totals"]
        reward = last.get("reward/mean", float("nan"))
        rate = last.get("reward/pass_rate", float("nan"))
        print(f"{result['steps']} steps done ({len(result['history'])} this run, "
              f"{result['seconds']:.0f} s); last reward {reward:.3f}, pass rate {rate:.3f}; "
              f"{totals['dropped']} samples dropped (no reward), {totals['hacked']} flagged as "
              f"reward hacks; metrics in {config.output / 'metrics.jsonl'}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from acecoder import demo

    return demo.main(workers=args.workers, jail=args.jail, limit=args.limit,
                     rm_problems=args.rm_problems, synth_questions=args.synth_questions,
                     rl_steps=args.rl_steps, budget=args.budget, output=args.output)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="acecoder",
        description="Infrastructure for reinforcement learning of code models: sandboxed test "
                    "execution, reward-model scoring, test synthesis and trainers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    # The deepspeed launcher puts --local_rank=N before everything else (torchrun uses env).
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None,
                    help=argparse.SUPPRESS)
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
    _add_listen_options(s, port=50051)
    s.add_argument("--max-queue", type=int, default=None,
                   help="requests that may wait for a worker before RESOURCE_EXHAUSTED (default 256)")
    s.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="default time limit per test, seconds (default 3)")
    _add_executor_options(s)
    s.set_defaults(func=cmd_serve_executor)

    s = services.add_parser(
        "rm", help="the AceCode-RM scoring service",
        description="Serve acecoder.v1.RewardModel (with grpc health and reflection), and "
                    "optionally the OpenRLHF-compatible HTTP gateway (POST /get_reward), until "
                    "SIGTERM, then drain. Health stays NOT_SERVING while the model loads.")
    _add_listen_options(s, port=50052)
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
    _add_model_options(s)
    s.set_defaults(func=cmd_serve_rm)

    s = services.add_parser(
        "synth", help="the test-synthesis service (one-seed streams and resumable jobs)",
        description="Serve acecoder.v1.Synthesis (with grpc health and reflection) until "
                    "SIGTERM, then drain. Jobs read and write JSONL under --data-dir; their "
                    "state lives in --state-dir, and jobs that were running when the server "
                    "stopped (or was killed) resume when it starts again.")
    _add_listen_options(s, port=50053)
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
    _add_synth_options(s)
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

    p = sub.add_parser("score", help="score a JSONL file of (question, response) records",
                       description="Score records with the reward model. Input lines: "
                                   "{\"id\", \"question\", \"response\"}. Output lines: "
                                   "{\"id\", \"score\"}. Rerunning with the same --output "
                                   "skips ids already written.")
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="use a running `acecoder serve rm` instead of loading the model here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(p)
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
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="use a running `acecoder serve rm` instead of loading the model here")
    p.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="executor service to run tests with (in-process scoring only)")
    p.add_argument("--budget", type=float, default=None, metavar="S",
                   help="latency budget per question, seconds: rank what has arrived when it "
                        "runs out (default: wait for every score and test)")
    p.add_argument("--synth", default=None, metavar="HOST:PORT",
                   help="synthesis service: imagine tests for questions that bring none (it "
                        "may take 70%% of the budget)")
    p.add_argument("--concurrency", type=int, default=8,
                   help="questions ranked at once (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(p)
    p.set_defaults(func=cmd_rerank)

    p = sub.add_parser("synth", help="synthesize tests for seed questions (stages 1-3)",
                       description="Rewrite each seed {\"id\", \"question\"?, \"program\"?} "
                                   "into a problem with imagined tests, keep the tests a proxy "
                                   "solution passes (run in the executor), drop benchmark "
                                   "look-alikes. Kept: AceCode-87K records in --output; dropped: "
                                   "OUT.dropped.jsonl with the reason. Resumable.")
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    _add_synth_options(p)
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="run it as a job of this `acecoder serve synth` instead (paths are "
                        "then the server's, relative to its --data-dir; the LLM options are "
                        "the server's too)")
    p.add_argument("--job-id", default=None,
                   help="with --server: the job's id (submitting an existing one follows it, "
                        "resuming it if it had stopped)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("sample", help="K programs per question from a policy, with pass rates",
                       description="For each AceCode-87K record, generate K programs with the "
                                   "policy (its chat template on context_messages), run each "
                                   "on test_cases in the executor, and add them to "
                                   "\"inferences\" with their pass rates. Resumable.")
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--llm", default="local", metavar="URL|local",
                   help="OpenAI-compatible API root or 'local' (default local)")
    p.add_argument("--llm-model", default=None,
                   help="policy model name (API) or checkpoint (local; default the embedded "
                        "SmolLM2-135M-Instruct)")
    p.add_argument("-k", type=int, default=8, help="samples per question (default 8)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=1024, help="tokens per sample")
    p.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="executor service (default: start one here)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_executor_options(p)
    p.set_defaults(func=cmd_sample)

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

    p = sub.add_parser("train", help="train a model",
                       description="Trainers. Run them alone, or under torchrun / the deepspeed "
                                   "launcher for several processes.")
    trainers = p.add_subparsers(dest="trainer", metavar="TRAINER", required=True)
    t = trainers.add_parser(
        "rm", help="the Bradley-Terry reward-model trainer",
        description="Train a reward model on preference pairs with -log sigmoid(r(x, y+) - "
                    "r(x, y-)), on DeepSpeed (ZeRO 0-3; fp32 on CPU, bf16 on GPU), evaluate "
                    "held-out pairwise accuracy, and save it where `acecoder serve rm --model "
                    "DIR` loads it. Settings: defaults < --preset JSON < flags.",
        epilog="AceCoder's GPU settings: --preset rm_acecoder_gpu (trainer/configs/)")
    t.add_argument("--data", default=None, metavar="PAIRS.jsonl",
                   help="AceCodePair records, or AceCode-87K records with inferences")
    t.add_argument("--output", default=None, metavar="DIR", help="where the model goes")
    t.add_argument("--preset", default=None, metavar="JSON|NAME",
                   help="settings file, or a bundled one: rm_cpu_tiny, rm_acecoder_gpu")
    t.add_argument("--model", default=None, metavar="PATH|ID",
                   help="init: AceCode-RM, a one-label classifier or a causal LM (default "
                        "embedded:smollm2-135m)")
    t.add_argument("--eval-data", default=None, metavar="PAIRS.jsonl",
                   help="held-out pairs (default: --eval-fraction of the questions)")
    t.add_argument("--eval-fraction", type=float, default=None, help="default 0.1")
    t.add_argument("--eval-every", type=int, default=None,
                   help="evaluate every N steps (default: each epoch's end)")
    t.add_argument("--epochs", type=int, default=None, help="default 1")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-5)")
    t.add_argument("--warmup-ratio", type=float, default=None, help="default 0.1")
    t.add_argument("--global-batch", type=int, default=None,
                   help="pairs per optimizer step over all processes (default 128)")
    t.add_argument("--micro-batch", type=int, default=None,
                   help="pairs per forward per process (default 4)")
    t.add_argument("--max-length", type=int, default=None, help="tokens per item (default 2048)")
    t.add_argument("--zero", type=int, default=None, choices=[0, 1, 2, 3],
                   help="ZeRO stage (default 0)")
    t.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16"])
    t.add_argument("--device", default=None, help="cpu, cuda or auto (default auto)")
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--head-only", action="store_true",
                   help="train the scalar head alone on the frozen backbone's features")
    t.add_argument("--deepspeed-config", default=None, metavar="JSON",
                   help="DeepSpeed settings that win over the ones made here")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train_rm)

    t = trainers.add_parser(
        "rl", help="the REINFORCE++ policy trainer, rewards from the services",
        description="REINFORCE++ on DeepSpeed: sample responses to the prompts with the policy, "
                    "score them over gRPC (executor: pass rate or all-pass; RM server; or a "
                    "mix) while generating, subtract a per-token KL penalty against the frozen "
                    "starting policy, whiten the returns over the batch and take PPO-clipped "
                    "steps. Checkpoints resume exactly: run the same command again after a "
                    "crash. Settings: defaults < --preset JSON < flags.",
        epilog="AceCoder's GPU settings: --preset rl_acecoder_gpu; a short CPU run: --preset "
               "rl_cpu_tiny (trainer/configs/)")
    t.add_argument("--data", default=None, metavar="PROMPTS.jsonl",
                   help="AceCode-87K records (context_messages/question, test_cases), or "
                        "embedded:mbpp")
    t.add_argument("--output", default=None, metavar="DIR",
                   help="metrics.jsonl, tensorboard/, checkpoints/, policy/")
    t.add_argument("--preset", default=None, metavar="JSON|NAME",
                   help="settings file, or a bundled one: rl_cpu_tiny, rl_acecoder_gpu")
    t.add_argument("--model", default=None, metavar="PATH|ID",
                   help="the policy to start from (default embedded:smollm2-135m)")
    t.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    t.add_argument("--reward", default=None, choices=["rule", "rm", "mix"],
                   help="rule: the executor's verdicts; rm: the RM server's score; mix: both "
                        "(default rule)")
    t.add_argument("--binary", default=None, action=argparse.BooleanOptionalAction,
                   help="rule reward 1.0 only when every test passes (AceCoder's, the "
                        "default); --no-binary: the pass rate")
    t.add_argument("--rm-weight", type=float, default=None,
                   help="mix: the weight of sigmoid(RM score); the rule reward gets the "
                        "rest (default 0.5)")
    t.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="`acecoder serve executor` (rule, mix)")
    t.add_argument("--rm", default=None, metavar="HOST:PORT", help="`acecoder serve rm` (rm, mix)")
    t.add_argument("--reward-deadline", type=float, default=None,
                   help="seconds for one chunk's reward calls, retries included (default 120)")
    t.add_argument("--test-timeout", type=float, default=None, help="seconds per test")
    t.add_argument("--steps", type=int, default=None, help="rollout steps (default 80)")
    t.add_argument("--rollout-batch", type=int, default=None,
                   help="prompts per step over all processes (default 256)")
    t.add_argument("--samples-per-prompt", type=int, default=None, help="default 8")
    t.add_argument("--train-batch", type=int, default=None,
                   help="samples per optimizer step over all processes (default 128)")
    t.add_argument("--micro-batch", type=int, default=None,
                   help="samples per forward per process (default 4)")
    t.add_argument("--generate-batch", type=int, default=None,
                   help="prompts per generate call per process (default 16)")
    t.add_argument("--max-prompt-length", type=int, default=None,
                   help="longer prompts are left out (default 1024 tokens)")
    t.add_argument("--max-new-tokens", type=int, default=None, help="default 1024")
    t.add_argument("--temperature", type=float, default=None, help="default 1.0")
    t.add_argument("--lr", type=float, default=None, help="default 5e-7")
    t.add_argument("--warmup-ratio", type=float, default=None, help="default 0")
    t.add_argument("--kl-coef", type=float, default=None, help="default 0.01")
    t.add_argument("--kl-estimator", default=None, choices=["k1", "k2", "k3"],
                   help="default k1")
    t.add_argument("--estimator", default=None, choices=["reinforce", "baseline"],
                   help="reinforce (REINFORCE++, default) or baseline (minus the mean reward "
                        "of the prompt's samples)")
    t.add_argument("--eps-clip", type=float, default=None, help="default 0.2")
    t.add_argument("--update-epochs", type=int, default=None,
                   help="passes over each rollout (default 1)")
    t.add_argument("--zero", type=int, default=None, choices=[0, 1, 2, 3],
                   help="ZeRO stage (default 0)")
    t.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16"])
    t.add_argument("--device", default=None, help="cpu, cuda or auto (default auto)")
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--no-overlap", action="store_true",
                   help="wait for each chunk's rewards before going on (for measuring)")
    t.add_argument("--rollout-engine", default=None, choices=["auto", "transformers", "vllm"],
                   help="what generates: vllm (the policy's weights pushed after each update) "
                        "or transformers; auto (default): vllm on GPU when installed")
    t.add_argument("--save-every", type=int, default=None,
                   help="checkpoint every N steps (default 10; always after the last)")
    t.add_argument("--keep-checkpoints", type=int, default=None, help="default 2")
    t.add_argument("--no-resume", action="store_true",
                   help="start over even if --output holds a checkpoint")
    t.add_argument("--deepspeed-config", default=None, metavar="JSON",
                   help="DeepSpeed settings that win over the ones made here")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train_rl)

    p = sub.add_parser("demo", help="the main job: the three services on the embedded models",
                       description="Start the executor, RM and synthesis services as processes "
                                   "on loopback; run every MbppBase reference solution and a "
                                   "broken variant of each through the executor; rank four "
                                   "candidates per problem for a few dozen problems (online "
                                   "best-of-N: random vs RM vs tests, with a latency budget); "
                                   "run a test-synthesis job; run a few REINFORCE++ steps with "
                                   "rewards from the executor and the RM server; stop every "
                                   "service and check that no process is left.")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems")
    p.add_argument("--rm-problems", type=int, default=20,
                   help="problems for the best-of-N step (default 20)")
    p.add_argument("--budget", type=float, default=0.1, metavar="S",
                   help="latency budget of the budgeted best-of-N pick (default 0.1)")
    p.add_argument("--synth-questions", type=int, default=3,
                   help="questions for the synthesis step (default 3; 0 skips it and the "
                        "synthesis service)")
    p.add_argument("--rl-steps", type=int, default=2,
                   help="REINFORCE++ steps for the RL step (default 2; 0 skips it)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="where the outputs go (default: a new temporary directory)")
    _add_executor_options(p)
    p.set_defaults(func=cmd_demo)
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


if __name__ == "__main__":
    sys.exit(main())
