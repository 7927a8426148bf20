"""Tiny reward-model checkpoints in the released formats, and reference forwards, for tests.

The AceCode-RM reference mirrors how AceCoder publishes its model: a Qwen2 causal LM with an
extra `v_head` module whose `summary` is Linear(hidden, 1, bias=True), saved with
save_pretrained (weights `model.*`, `lm_head.weight`, `v_head.summary.*`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
)


class ValueHead(torch.nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.summary = torch.nn.Linear(hidden, 1, bias=True)


class AceCodeRMReference(Qwen2ForCausalLM):
    """The released AceCode-RM layout, and the straightforward forward to compare with."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        self.v_head = ValueHead(config.hidden_size)

    @torch.inference_mode()
    def reward(self, input_ids: list[int]) -> float:
        hidden = self.model(input_ids=torch.tensor([input_ids])).last_hidden_state
        return float(self.v_head.summary(hidden[:, -1]).item())


def tiny_config(vocab: int, hidden: int = 64, **kw: Any) -> Qwen2Config:
    return Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=4096, tie_word_embeddings=False, **kw)


def chat_ids(tokenizer: Any, question: str, response: str) -> list[int]:
    """How AceCoder's own example feeds its RM: the chat template, tokenized by it."""
    out = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}, {"role": "assistant", "content": response}],
        tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def make_acecode_rm(out: Path, tokenizer_dir: str, *, seed: int = 0,
                    head_trained: bool | None = None, hidden: int = 64,
                    init: float = 0.02) -> AceCodeRMReference:
    """`hidden=128` gives 32-wide attention heads, the narrowest vLLM's CPU kernels take;
    a larger `init` spreads the scores of items that end in the same tokens."""
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AceCodeRMReference(tiny_config(len(tok), hidden, pad_token_id=tok.pad_token_id,
                                           initializer_range=init))
    with torch.no_grad():
        model.v_head.summary.weight.normal_(0, 1.0)
        model.v_head.summary.bias.fill_(0.25)
    model.config.architectures = ["AceCodeRM"]
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    if head_trained is not None:
        (out / "acecoder_rm.json").write_text(json.dumps({"head_trained": head_trained}))
    return model.eval()


def make_seq_cls(out: Path, tokenizer_dir: str, *, labels: int = 1,
                 seed: int = 1) -> Qwen2ForSequenceClassification:
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = tiny_config(len(tok), pad_token_id=tok.pad_token_id)
    cfg.num_labels = labels
    model = Qwen2ForSequenceClassification(cfg)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return model.eval()


def same_scores(want: Any) -> Any:
    """Raw reward scores computed in different batches, as pytest compares them: float32 sums
    taken in another order move a raw score of -31 by about 1e-4 (relative 5e-6); a padding or
    pooling bug moves it by about 1."""
    import pytest

    return pytest.approx(want, rel=2e-5, abs=1e-4)
