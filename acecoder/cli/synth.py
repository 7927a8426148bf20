"""`acecoder synth` and `sample`: test synthesis (stages 1-3, here or as a job on a server) and
sampling a policy's programs with their pass rates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import Default, add_executor_options, add_io, add_quiet, executor_target, offline_job

SYNTH = "acecoder.server.synth.pipeline:SynthConfig"
FILTER = "acecoder.server.synth.filter:FilterRule"


def register(sub: Any) -> None:
    """`synth` and `sample`."""
    p = sub.add_parser("synth", help="synthesize tests for seed questions (stages 1-3)",
                       description="Rewrite each seed {\"id\", \"question\"?, \"program\"?} "
                                   "into a problem with imagined tests, keep the tests a proxy "
                                   "solution passes (run in the executor), drop benchmark "
                                   "look-alikes. Kept: AceCode-87K records in --output; dropped: "
                                   "OUT.dropped.jsonl with the reason. Resumable.")
    add_io(p)
    add_synth_options(p)
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="run it as a job of this `acecoder serve synth` instead (paths are "
                        "then the server's, relative to its --data-dir; the LLM options are "
                        "the server's too)")
    p.add_argument("--job-id", default=None,
                   help="with --server: the job's id (submitting an existing one follows it, "
                        "resuming it if it had stopped)")
    add_quiet(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("sample", help="K programs per question from a policy, with pass rates",
                       description="For each AceCode-87K record, generate K programs with the "
                                   "policy (its chat template on context_messages), run each "
                                   "on test_cases in the executor, and add them to "
                                   "\"inferences\" with their pass rates. Resumable.")
    add_io(p)
    p.add_argument("--llm", default="local", metavar="URL|local",
                   help="OpenAI-compatible API root or 'local' (default %(default)s)")
    p.add_argument("--llm-model", default=None,
                   help="policy model name (API) or checkpoint (local; default the embedded "
                        "SmolLM2-135M-Instruct)")
    p.add_argument("-k", type=int, default=8, help="samples per question (default %(default)s)")
    p.add_argument("--temperature", type=float,
                   default=Default("acecoder.server.synth.sample:run", "temperature"),
                   help="(default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=1024,
                   help="tokens per sample (default %(default)s)")
    p.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="executor service (default: start one here)")
    add_quiet(p)
    add_executor_options(p)
    p.set_defaults(func=cmd_sample)


def add_synth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm", default="local", metavar="URL|local|vllm",
                   help="OpenAI-compatible API root (e.g. http://localhost:8000/v1), 'local' "
                        "(transformers in-process) or 'vllm' (vLLM in-process) (default "
                        "%(default)s)")
    p.add_argument("--llm-model", default=None,
                   help="model name for the API, or the checkpoint for local/vllm (default: "
                        "the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--proxy", default=None, metavar="URL|local|vllm|reference",
                   help="where the proxy model runs (default: same as --llm); 'reference': "
                        "each seed's own program is the proxy solution")
    p.add_argument("--proxy-model", default=None, help="proxy model (default: --llm-model)")
    p.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="executor service (default: start one here)")
    p.add_argument("--tests", type=int, default=Default(SYNTH, "n_tests"),
                   help="tests to ask for per question (default %(default)s)")
    p.add_argument("--stages", default=Default(SYNTH, "stages", convert=",".join),
                   metavar="LIST",
                   help="which of stages 1-3 run (default all: %(default)s); without rewrite, "
                        "seeds bring their own \"tests\"")
    p.add_argument("--min-passed", type=int, default=Default(FILTER, "min_passed"),
                   help="drop a question whose proxy passes fewer tests (default %(default)s: "
                        "AceCoder)")
    p.add_argument("--min-kept", type=int, default=Default(FILTER, "min_kept"),
                   help="drop a question with fewer tests left (default %(default)s: AceCoder)")
    p.add_argument("--decontam-threshold", type=float,
                   default=Default(SYNTH, "decontam_threshold"), metavar="F",
                   help="drop a question whose 10-gram overlap with a benchmark prompt exceeds "
                        "this (default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=2048,
                   help="LLM answer limit, tokens (default %(default)s)")
    p.add_argument("--benchmark", action="append", default=[], metavar="FILE.jsonl",
                   help="more benchmark prompts to decontaminate against (repeatable; default: "
                        "the bundled HumanEval and MBPP prompts only)")
    add_executor_options(p)


def chat_model(where: str, model: str | None, max_tokens: int):  # type: ignore[no-untyped-def]
    from acecoder.server.synth.backends import make_chat

    return make_chat(where, model, max_tokens=max_tokens)


def llm_and_proxy(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The rewrite LLM and the proxy: one object when they are the same model."""
    llm = chat_model(args.llm, args.llm_model, args.max_tokens)
    if args.proxy in (None, args.llm, "reference") and args.proxy_model in (None, args.llm_model):
        return llm, llm
    return llm, chat_model(args.proxy or args.llm, args.proxy_model or args.llm_model,
                      args.max_tokens)


def synth_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from acecoder.server.synth import pipeline
    from acecoder.server.synth.filter import FilterRule

    return pipeline.SynthConfig(n_tests=args.tests,
                                benchmark_files=tuple(Path(b) for b in args.benchmark),
                                stages=synth_stages(args),
                                proxy_reference=args.proxy == "reference",
                                rule=FilterRule(min_passed=args.min_passed,
                                                min_kept=args.min_kept),
                                decontam_threshold=args.decontam_threshold)


def synth_stages(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(s.strip() for s in args.stages.split(",") if s.strip())


def synth_on_server(args: argparse.Namespace) -> int:
    """Submit the input as a job to `acecoder serve synth` and follow it to the end."""
    from acecoder.clients import SynthesisClient
    from acecoder.clients.synthesis import state_name
    from acecoder.jsonl import Progress
    from acecoder.remote_errors import RemoteError
    from acecoder.server.synth import pipeline

    with SynthesisClient(args.server) as client:
        try:
            job = client.submit_job(args.input, args.output, job_id=args.job_id or "",
                                    n_tests=args.tests, stages=synth_stages(args),
                                    proxy_reference=True if args.proxy == "reference" else None,
                                    min_passed=args.min_passed, min_kept=args.min_kept,
                                    decontam_threshold=args.decontam_threshold)
        except RemoteError as exc:
            print(f"acecoder synth: {exc.details()}", file=sys.stderr)
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
        return synth_on_server(args)
    config = synth_config(args)
    llm, proxy = llm_and_proxy(args)
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

    with executor_target(args) as target:
        code = offline_job("synth", job(target), "{kept} questions kept")
    if code == 0 and report:
        print(pipeline.format_report(report), file=sys.stderr)
    return code


def cmd_sample(args: argparse.Namespace) -> int:
    from acecoder.clients import AsyncExecutorClient
    from acecoder.server.synth import sample

    policy = chat_model(args.llm, args.llm_model, args.max_tokens)

    async def job(target: str) -> dict[str, int]:
        async with AsyncExecutorClient(target, timeout=600) as ex:
            try:
                return await sample.run(
                    Path(args.input), Path(args.output), policy=policy,
                    model_name=args.llm_model or "embedded:smollm2-135m", k=args.k,
                    executor=ex, temperature=args.temperature, progress=not args.quiet)
            finally:
                await policy.close()

    with executor_target(args) as target:
        return offline_job("sample", job(target), "{sampled} questions sampled, {skipped} already "
                        f"in {args.output}")
