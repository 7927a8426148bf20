"""`acecoder train rm|rl`: the reward-model and policy trainers."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from acecoder.jsonl import InputError

from .common import Default, add_quiet

RM_TRAIN = "acecoder.trainer.recipes.rm_bt:RMTrainConfig"
RL_TRAIN = "acecoder.trainer.recipes.reinforce_pp:RLTrainConfig"


def _rm(field: str) -> Default:
    """A trainer flag's default: its config's shows in help; left out, the flag stays None,
    so that a --preset fills it (defaults < preset < flags)."""
    return Default(RM_TRAIN, field, shown_only=True)


def _rl(field: str) -> Default:
    return Default(RL_TRAIN, field, shown_only=True)


def register(sub: Any) -> None:
    """`train` and its trainers."""
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
    t.add_argument("--model", default=_rm("model"), metavar="PATH|ID",
                   help="init: AceCode-RM, a one-label classifier or a causal LM (default "
                        "%(default)s)")
    t.add_argument("--eval-data", default=None, metavar="PAIRS.jsonl",
                   help="held-out pairs (default: --eval-fraction of the questions)")
    t.add_argument("--eval-fraction", type=float, default=_rm("eval_fraction"),
                   help="default %(default)s")
    t.add_argument("--eval-every", type=int, default=None,
                   help="evaluate every N steps (default: each epoch's end)")
    t.add_argument("--epochs", type=int, default=_rm("epochs"), help="default %(default)s")
    t.add_argument("--lr", type=float, default=_rm("lr"),
                   help="peak learning rate (default %(default)s)")
    t.add_argument("--warmup-ratio", type=float, default=_rm("warmup_ratio"),
                   help="default %(default)s")
    t.add_argument("--global-batch", type=int, default=_rm("global_batch"),
                   help="pairs per optimizer step over all processes (default %(default)s)")
    t.add_argument("--micro-batch", type=int, default=_rm("micro_batch"),
                   help="pairs per forward per process (default %(default)s)")
    t.add_argument("--max-length", type=int, default=_rm("max_length"),
                   help="tokens per item (default %(default)s)")
    t.add_argument("--zero", type=int, default=_rm("zero_stage"), choices=[0, 1, 2, 3],
                   help="ZeRO stage (default %(default)s)")
    t.add_argument("--dtype", default=_rm("dtype"),
                   choices=["auto", "float32", "bfloat16"], help="(default %(default)s)")
    t.add_argument("--device", default=_rm("device"),
                   help="cpu, cuda or auto (default %(default)s)")
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--head-only", action="store_true",
                   help="train the scalar head alone on the frozen backbone's features")
    t.add_argument("--deepspeed-config", default=None, metavar="JSON",
                   help="DeepSpeed settings that win over the ones made here")
    t.add_argument("--seed", type=int, default=_rm("seed"),
                   help="(default %(default)s)")
    add_quiet(t)
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
    t.add_argument("--model", default=_rl("model"), metavar="PATH|ID",
                   help="the policy to start from (default %(default)s)")
    t.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    t.add_argument("--reward", default=_rl("reward"), choices=["rule", "rm", "mix"],
                   help="rule: the executor's verdicts; rm: the RM server's score; mix: both "
                        "(default %(default)s)")
    t.add_argument("--binary", default=None, action=argparse.BooleanOptionalAction,
                   help="rule reward 1.0 only when every test passes (AceCoder's, the "
                        "default); --no-binary: the pass rate")
    t.add_argument("--rm-weight", type=float, default=_rl("rm_weight"),
                   help="mix: the weight of the RM's calibrated probability; the rule "
                        "reward gets the rest (default %(default)s)")
    t.add_argument("--executor", default=None, metavar="HOST:PORT",
                   help="`acecoder serve executor` (rule, mix)")
    t.add_argument("--rm", default=None, metavar="HOST:PORT", help="`acecoder serve rm` (rm, mix)")
    t.add_argument("--reward-deadline", type=float, default=_rl("reward_deadline"),
                   help="seconds for one chunk's reward calls, retries included (default "
                        "%(default)s)")
    t.add_argument("--test-timeout", type=float, default=None, help="seconds per test")
    t.add_argument("--steps", type=int, default=_rl("steps"),
                   help="rollout steps (default %(default)s)")
    t.add_argument("--rollout-batch", type=int, default=_rl("rollout_batch"),
                   help="prompts per step over all processes (default %(default)s)")
    t.add_argument("--samples-per-prompt", type=int, default=_rl("samples_per_prompt"),
                   help="default %(default)s")
    t.add_argument("--train-batch", type=int, default=_rl("train_batch"),
                   help="samples per optimizer step over all processes (default %(default)s)")
    t.add_argument("--micro-batch", type=int, default=_rl("micro_batch"),
                   help="samples per forward per process (default %(default)s)")
    t.add_argument("--generate-batch", type=int, default=_rl("generate_batch"),
                   help="prompts per generate call per process (default %(default)s)")
    t.add_argument("--max-prompt-length", type=int, default=_rl("max_prompt_length"),
                   help="longer prompts are left out (default %(default)s tokens)")
    t.add_argument("--max-new-tokens", type=int, default=_rl("max_new_tokens"),
                   help="default %(default)s")
    t.add_argument("--temperature", type=float, default=_rl("temperature"),
                   help="default %(default).1f")
    t.add_argument("--lr", type=float, default=_rl("lr"), help="default %(default)s")
    t.add_argument("--warmup-ratio", type=float, default=_rl("warmup_ratio"),
                   help="default %(default)s")
    t.add_argument("--kl-coef", type=float, default=_rl("kl_coef"), help="default %(default)s")
    t.add_argument("--kl-estimator", default=_rl("kl_estimator"), choices=["k1", "k2", "k3"],
                   help="default %(default)s")
    t.add_argument("--estimator", default=_rl("estimator"), choices=["reinforce", "baseline"],
                   help="reinforce (REINFORCE++, default) or baseline (minus the mean reward "
                        "of the prompt's samples)")
    t.add_argument("--eps-clip", type=float, default=_rl("eps_clip"), help="default %(default)s")
    t.add_argument("--update-epochs", type=int, default=_rl("update_epochs"),
                   help="passes over each rollout (default %(default)s)")
    t.add_argument("--zero", type=int, default=_rl("zero_stage"), choices=[0, 1, 2, 3],
                   help="ZeRO stage (default %(default)s)")
    t.add_argument("--dtype", default=_rl("dtype"),
                   choices=["auto", "float32", "bfloat16"], help="(default %(default)s)")
    t.add_argument("--device", default=_rl("device"),
                   help="cpu, cuda or auto (default %(default)s)")
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--no-overlap", action="store_true",
                   help="wait for each chunk's rewards before going on (for measuring)")
    t.add_argument("--rollout-engine", default=_rl("rollout_engine"),
                   choices=["auto", "transformers", "vllm"],
                   help="what generates: vllm (the policy's weights pushed after each update) "
                        "or transformers; auto (default): vllm on GPU when installed")
    t.add_argument("--save-every", type=int, default=_rl("save_every"),
                   help="checkpoint every N steps (default %(default)s; always after the last)")
    t.add_argument("--keep-checkpoints", type=int, default=_rl("keep_checkpoints"),
                   help="default %(default)s")
    t.add_argument("--no-resume", action="store_true",
                   help="start over even if --output holds a checkpoint")
    t.add_argument("--deepspeed-config", default=None, metavar="JSON",
                   help="DeepSpeed settings that win over the ones made here")
    t.add_argument("--seed", type=int, default=_rl("seed"),
                   help="(default %(default)s)")
    add_quiet(t)
    t.set_defaults(func=cmd_train_rl)


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
