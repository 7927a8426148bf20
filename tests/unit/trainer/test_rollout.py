"""Rollouts on a tiny causal LM: samples per prompt, the response mask, and per-token
log-probs that match the model's own scores at generation time."""

from __future__ import annotations

import pytest
import torch

from acecoder.trainer import reinforce
from acecoder.trainer.rollout import chat_prompts, generate, response_logprobs


@pytest.fixture(scope="module")
def tiny(smol_tokenizer_dir: str):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from tests.rm_checkpoints import tiny_config

    tok = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_config(len(tok), pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id)).eval()
    return model, tok


def test_samples_masks_and_logprobs(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny
    prompts = chat_prompts(tok, [[{"role": "user", "content": "Write add(a, b)."}],
                                 [{"role": "user", "content": "Hi"}]])
    assert len(prompts[0]) > len(prompts[1])  # different lengths: left padding is exercised
    roll = generate(model, tok, prompts, samples=3, temperature=1.0, max_new_tokens=8, seed=1)
    assert roll.sequences.shape[0] == 6 and roll.prompt_index == [0, 0, 0, 1, 1, 1]
    assert roll.response_mask.shape == (6, roll.sequences.shape[1] - roll.prompt_len)
    assert len(roll.texts) == 6
    # log-probs from one teacher-forced forward == those of a prompt-by-prompt forward
    logps, logits = response_logprobs(model, roll, with_logits=True)
    assert logps.shape == roll.response_mask.shape and logits is not None
    for i in (0, 4):
        prompt = prompts[roll.prompt_index[i]]
        n = int(roll.response_mask[i].sum())
        resp = roll.sequences[i, roll.prompt_len:roll.prompt_len + n]
        alone = torch.tensor([prompt + resp.tolist()])
        with torch.no_grad():
            out = torch.log_softmax(model(input_ids=alone).logits[0].float(), -1)
        want = out[len(prompt) - 1:-1].gather(-1, resp.unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(logps[i, :n].detach(), want, atol=1e-4)
    ent = reinforce.entropy(logits, roll.response_mask)
    assert 0 < ent.item() <= torch.log(torch.tensor(float(logits.shape[-1]))).item()


def test_greedy_is_repeatable_and_the_mask_stops_after_eos(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny
    prompts = chat_prompts(tok, [[{"role": "user", "content": "Hello"}]])
    a = generate(model, tok, prompts, samples=2, temperature=0.0, max_new_tokens=6, seed=0)
    b = generate(model, tok, prompts, samples=1, temperature=0.0, max_new_tokens=6, seed=5)
    assert torch.equal(a.sequences[0], a.sequences[1]) and torch.equal(a.sequences[0],
                                                                       b.sequences[0])
    assert a.response_mask.all()  # no end of turn in 6 tokens: all real
    # make the third greedy token the end of turn: generation stops there, the mask too
    import copy

    stop = int(a.sequences[0, a.prompt_len + 2])
    first = int((a.sequences[0, a.prompt_len:] == stop).nonzero()[0])
    tok2 = copy.deepcopy(tok)
    tok2.eos_token = tok.convert_ids_to_tokens(stop)
    c = generate(model, tok2, prompts, samples=1, temperature=0.0, max_new_tokens=6, seed=0)
    assert c.response_mask[0].tolist() == [1] * (first + 1) + [0] * (
        c.response_mask.shape[1] - first - 1)
    assert int(c.sequences[0, c.prompt_len + first]) == stop
