"""The reward model as the trainer sees it: the RM server's own loader and encoder (so that
training and serving tokenize and read scores identically), made trainable, and saved back
in the format the server loads.

Inits: an AceCode-RM checkpoint (causal LM + `v_head.summary`), a one-label
``*ForSequenceClassification`` model (decoder or encoder), or a plain causal LM, which gets a
new AceCode-RM head (AceCoder trains AceCode-RM from Qwen2.5-Coder-7B-Instruct this way).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from acecoder.models import reward as models
from acecoder.models.files import HEAD_PREFIX, METADATA_FILE
from acecoder.models.reward import ModelDescription, RewardModel

logger = logging.getLogger(__name__)


class TrainableRM(torch.nn.Module):
    """The trainable parts of a RewardModel as one module (what DeepSpeed wraps).
    forward(batch from `RewardModel.pad`) -> [B] scores."""

    def __init__(self, rm: RewardModel) -> None:
        super().__init__()
        self.rm = rm
        if rm.decoder:
            self.backbone = rm.backbone
            self.head = rm.head
        else:
            self.full_model = rm.full_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return self.rm.score_batch({"input_ids": input_ids, "attention_mask": attention_mask,
                                    "token_type_ids": token_type_ids, "last": last})


def load_for_training(model: str, *, max_length: int | None = None, device: str = "cpu",
                      dtype: str = "float32", gradient_checkpointing: bool = False,
                      seed: int = 0, head_only: bool = False) -> RewardModel:
    """The model in training mode, every parameter trainable; `head_only`: only the scalar
    head (the backbone frozen, a feature extractor)."""
    path = models.resolve(model)
    try:
        models.detect_format(path)
        rm = models.load(model, dtype=dtype, device=device, max_length=max_length)
    except ValueError:
        rm = _with_new_head(model, path, dtype=dtype, device=device, max_length=max_length,
                            seed=seed)
    for m in (rm.backbone, rm.head, rm.full_model):
        if m is not None:
            m.requires_grad_(not head_only)
            m.train()
    if head_only:
        head = rm.head if rm.decoder else next(
            (getattr(rm.full_model, n) for n in ("classifier", "score")
             if hasattr(rm.full_model, n)), None)
        if head is None:
            raise ValueError(f"{model}: no scalar head found to train alone")
        head.requires_grad_(True)
    if gradient_checkpointing:
        target = rm.full_model if rm.full_model is not None else rm.backbone
        target.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    return rm


def _with_new_head(model: str, path: Path, *, dtype: str, device: str, max_length: int | None,
                   seed: int) -> RewardModel:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(str(path))
    archs = config.architectures or []
    if not any(a.endswith("ForCausalLM") for a in archs):
        raise ValueError(f"{model} is neither a reward model nor a causal LM "
                         f"({', '.join(archs) or 'no architecture'}): nothing to train from")
    torch_dtype = models.resolve_dtype(dtype, device)
    backbone = AutoModel.from_pretrained(str(path), dtype=torch_dtype).to(device)
    hidden = int(config.hidden_size)
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(hidden, 1, bias=True)
    with torch.no_grad():  # small, so that the untrained scores start near 0
        head.weight.copy_(torch.randn(1, hidden, generator=generator) / (hidden + 1) ** 0.5)
        head.bias.zero_()
    head.to(device=device, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    limit = max_length or models._default_max_length(config, tokenizer)
    description = ModelDescription(
        model_id=model, path=str(path), format="acecode-rm",
        architecture=f"{type(backbone).__name__} + v_head.summary (new)",
        dtype=str(torch_dtype).removeprefix("torch."), device=device, max_length=limit,
        head_trained=False, decoder=True)
    return RewardModel(tokenizer=tokenizer, backbone=backbone, head=head,
                       description=description)


def save(rm: RewardModel, out: Path, *, card: dict[str, Any]) -> Path:
    """Write `rm` where the RM server loads it: AceCode-RM's layout for decoders with a value
    head (the source's config and LM head kept), the classifier as it was otherwise; plus
    acecoder_rm.json (head_trained, the training card) and a README model card."""
    out.mkdir(parents=True, exist_ok=True)
    source = Path(rm.description.path)
    meta = models.read_metadata(source)
    if rm.description.format == "acecode-rm":
        _save_acecode_rm(rm, source, out)
        fmt = "acecode-rm"
    else:
        clf = rm.full_model
        if rm.decoder and rm.head is not clf.score:  # a converted head: its bias kept aside
            with torch.no_grad():
                clf.score.weight.copy_(rm.head.weight)
            meta["score_bias"] = float(rm.head.bias.reshape(-1)[0])
            clf.config.score_bias = meta["score_bias"]
        clf.save_pretrained(str(out))
        fmt = "seq-cls"
    rm.tokenizer.save_pretrained(str(out))
    meta.update({"format": fmt, "head_trained": True, "trained_from": rm.description.model_id,
                 "training": card})
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (out / "README.md").write_text(model_card(rm.description.model_id, card))
    return out


def _save_acecode_rm(rm: RewardModel, source: Path, out: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    prefix = type(rm.backbone).base_model_prefix or "model"
    weights = {f"{prefix}.{k}": v.detach().to("cpu").contiguous()
               for k, v in rm.backbone.state_dict().items()}
    for k, v in rm.head.state_dict().items():
        weights[HEAD_PREFIX + k] = v.detach().to("cpu").contiguous()
    for f in sorted(source.glob("*.safetensors")):  # an untied LM head: kept as it was
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key.startswith("lm_head."):
                    weights[key] = st.get_tensor(key).contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy2(source / "config.json", out / "config.json")
    for name in ("generation_config.json", "chat_template.jinja"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)


def model_card(base: str, card: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in card.items())
    return (f"# AceCode-RM trained by acecoder\n\nA reward model for code: trained from `{base}` "
            "with the Bradley-Terry loss on preference pairs (chosen = the program that passes "
            "more tests). Score = the value head at the last token of the chat-templated "
            "(question, program); higher is better. Serve it with `acecoder serve rm --model "
            f"DIR`.\n\n| | |\n|---|---|\n{rows}\n")
