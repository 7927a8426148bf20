"""The vLLM backend: our tokenization and truncation, vLLM's pooling runner for the forward.

vLLM serves one-label ``*ForSequenceClassification`` checkpoints. An AceCode-RM checkpoint is
converted once (``rm convert``, cached next to the embedded models) and the head's bias, which
the converted classifier cannot hold, is added back here. Items are encoded exactly as the
transformers backend encodes them, so both backends score the same token ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from acecoder.models import convert
from acecoder.models import reward as models
from acecoder.models.reward import BatchStats, Encoded, ModelDescription, RewardModel

from .config import RewardConfig

logger = logging.getLogger(__name__)


def seq_cls_checkpoint(model: str) -> tuple[Path, str]:
    """A one-label seq-cls directory for `model` (converted and cached if it is AceCode-RM)."""
    path = models.resolve(model)
    fmt = models.detect_format(path)
    if fmt == "seq-cls":
        return path, fmt
    return convert.cached(model, "seqcls", convert.to_seq_cls), fmt


class VllmBackend:
    def __init__(self, *, tokenizer_model: RewardModel, scorer: object, bias: float,
                 description: ModelDescription) -> None:
        self.model = tokenizer_model
        self.scorer = scorer
        self.bias = bias
        self.description = description

    @classmethod
    def load(cls, config: RewardConfig) -> VllmBackend:
        from transformers import AutoConfig, AutoTokenizer

        from .vllm_engine import VllmScorer

        path, fmt = seq_cls_checkpoint(config.model)
        meta = models.read_metadata(path)
        hf_config = AutoConfig.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        limit = config.max_length or models._default_max_length(hf_config, tokenizer)
        dtype = models.resolve_dtype(config.dtype, config.device)
        description = ModelDescription(
            model_id=config.model, path=str(path), format=fmt,
            architecture=(hf_config.architectures or ["?"])[0] + " (vLLM pooling)",
            dtype=str(dtype).removeprefix("torch."), device=config.device, max_length=limit,
            head_trained=bool(meta.get("head_trained", True)), decoder=True)
        if getattr(hf_config, "is_encoder_decoder", False) or hf_config.model_type == "bert":
            raise ValueError("the vllm backend serves decoder reward models; use the "
                             "transformers backend for encoders")
        scorer = VllmScorer(str(path), dtype=description.dtype, max_length=limit,
                            device="cuda" if config.device.startswith("cuda") else "cpu")
        bias = float(meta.get("score_bias", getattr(hf_config, "score_bias", 0.0)) or 0.0)
        encoder = RewardModel(tokenizer=tokenizer, backbone=None, head=None,
                              description=description)
        return cls(tokenizer_model=encoder, scorer=scorer, bias=bias, description=description)

    def encode(self, question: str, response: str) -> Encoded:
        return self.model.encode(question, response)

    def score(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        stats.items += len(items)
        n = sum(len(e.ids) for e in items)
        stats.real_tokens += n
        stats.useful_tokens += n
        stats.tokens += n  # vLLM packs sequences: no padding
        raw = self.scorer.score([list(e.ids) for e in items])  # type: ignore[attr-defined]
        return [s + self.bias for s in raw]

    def close(self) -> None:
        self.scorer.close()  # type: ignore[attr-defined]
