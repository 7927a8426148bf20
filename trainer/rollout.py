"""Rollouts for the RL trainer on transformers (the CPU path; vLLM takes over on GPU):
prompts through the policy's chat template, samples per prompt, and the tensors the
REINFORCE++ math needs (response tokens, mask, per-token log-probs).

Layout of a rollout batch: `sequences` [B, P + T] = left-padded prompt (P) followed by the
right-padded response (T); `response_mask` [B, T] marks real response tokens (up to and
including the end-of-turn token when the policy produced one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Rollout:
    sequences: torch.Tensor
    """[B, P + T] token ids."""
    attention_mask: torch.Tensor
    """[B, P + T] 1 on real tokens (prompt and response)."""
    prompt_len: int
    """P: responses start at this column."""
    response_mask: torch.Tensor
    """[B, T] 1 on real response tokens."""
    texts: list[str]
    """The decoded responses (special tokens skipped), B of them."""
    prompt_index: list[int]
    """Which prompt each row samples (the group of the `baseline` variant)."""


def chat_prompts(tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]]
                 ) -> list[list[int]]:
    """Token ids of each conversation with the assistant turn opened."""
    return [list(tokenizer(str(tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, tokenize=False)),
        add_special_tokens=False)["input_ids"]) for messages in conversations]


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: list[list[int]], *, samples: int,
             temperature: float, max_new_tokens: int, seed: int,
             synced_gpus: bool = False) -> Rollout:
    """`samples` responses per prompt, sampled at `temperature` (greedy at 0).
    `synced_gpus`: every process runs the same number of forwards (ZeRO-3 gathers weights
    in each one), however early its own sequences finish."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [p for p in prompts for _ in range(samples)]
    width = max(len(p) for p in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, p in enumerate(rows):  # left padding: every response starts at column `width`
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    device = next(model.parameters()).device
    kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad,
                          "eos_token_id": tokenizer.eos_token_id, "synced_gpus": synced_gpus}
    if temperature > 0:
        torch.manual_seed(seed)
        kw.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
    else:
        kw.update(do_sample=False)
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kw).cpu()
    response = out[:, width:]
    eos = tokenizer.eos_token_id
    response_mask = torch.ones_like(response)
    for i in range(response.shape[0]):  # real tokens: up to and including the first eos
        hits = (response[i] == eos).nonzero()
        if len(hits):
            response_mask[i, int(hits[0]) + 1:] = 0
    texts = [tokenizer.decode(r[m.bool()], skip_special_tokens=True)
             for r, m in zip(response, response_mask, strict=True)]
    return Rollout(out, torch.cat([mask, response_mask], dim=1), width, response_mask, texts,
                   [i for i in range(len(prompts)) for _ in range(samples)])


def response_logprobs(model: Any, rollout: Rollout, *, with_logits: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(token) of each response token under `model`: [B, T] (with grad when enabled),
    and the response positions' logits [B, T, V] when asked (for the entropy)."""
    device = next(model.parameters()).device
    seq = rollout.sequences.to(device)
    att = rollout.attention_mask.to(device)
    positions = (att.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0
    logits = model(input_ids=seq, attention_mask=att, position_ids=positions).logits
    p = rollout.prompt_len
    scoring = logits[:, p - 1:-1].float()  # the logits that predict each response token
    logps = torch.log_softmax(scoring, dim=-1).gather(-1, seq[:, p:].unsqueeze(-1)).squeeze(-1)
    return logps, (scoring if with_logits else None)


def split(rollout: Rollout) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) of each row, padding removed."""
    p = rollout.prompt_len
    out = []
    for seq, att, resp in zip(rollout.sequences, rollout.attention_mask,
                              rollout.response_mask, strict=True):
        out.append((seq[:p][att[:p].bool()].tolist(), seq[p:][resp.bool()].tolist()))
    return out


def collate(rows: Sequence[tuple[list[int], list[int]]], pad: int) -> Rollout:
    """The inverse of `split` for any rows: prompts left-padded to one width, responses
    right-padded to another (training micro-batches mix rows of different generations)."""
    width = max(len(p) for p, _ in rows)
    length = max(1, max(len(r) for _, r in rows))
    seq = torch.full((len(rows), width + length), pad, dtype=torch.long)
    att = torch.zeros_like(seq)
    for i, (p, r) in enumerate(rows):
        seq[i, width - len(p):width] = torch.tensor(p, dtype=torch.long)
        seq[i, width:width + len(r)] = torch.tensor(r, dtype=torch.long)
        att[i, width - len(p):width + len(r)] = 1
    return Rollout(seq, att, width, att[:, width:].clone(), [], [])
