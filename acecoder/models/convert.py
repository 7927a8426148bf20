"""`acecoder rm convert`: an AceCode-RM checkpoint as a one-label sequence classifier.

vLLM serves ``*ForSequenceClassification`` models with its pooling runner but knows nothing
of ``v_head.summary``. The conversion keeps every backbone weight, drops the LM head, and
makes ``v_head.summary.weight`` the classifier's ``score.weight``. Sequence classifiers of
decoder families have no bias on ``score``, so the head's bias (a constant added to every
score) is recorded as ``score_bias`` in ``acecoder_rm.json`` and in ``config.json``;
acecoder's backends add it back, and anyone else gets scores shifted by that constant (the
same rankings and the same differences).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from .files import HEAD_PREFIX, METADATA_FILE, cache_dir, locked
from .reward import detect_format, read_metadata, resolve

logger = logging.getLogger(__name__)

_COPY = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
         "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
         "generation_config.json", "added_tokens.json", "vocab.txt")


def cached(model: str, kind: str, build: Callable[[str, Path], Path]) -> Path:
    """`build(path, out)` run once per source checkpoint and kind (e.g. 'seqcls'), into the
    cache next to the embedded models; rebuilt when the source's config.json is newer."""
    path = resolve(model)
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    root = cache_dir() / "converted"
    out = root / f"{path.name}-{key}-{kind}"
    with locked(root / f".{key}-{kind}.lock"):
        stale = (out / "config.json").is_file() and \
            (out / "config.json").stat().st_mtime < (path / "config.json").stat().st_mtime
        if stale:
            shutil.rmtree(out)
        if not (out / "config.json").is_file():
            logger.info("converting %s (%s) into %s", model, kind, out)
            build(str(path), out)
    return out


def to_causal_lm(source: str, output: Path) -> Path:
    """The causal LM inside an AceCode-RM checkpoint, without the value head (for generation
    engines such as vLLM, which refuse weights their model class does not have)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = resolve(source)
    output.mkdir(parents=True, exist_ok=True)
    weights = {}
    for f in sorted(src.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if not key.startswith(HEAD_PREFIX):
                    weights[key] = st.get_tensor(key).contiguous()
    save_file(weights, str(output / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", *_COPY):
        if (src / name).is_file():
            shutil.copy2(src / name, output / name)
    return output


def to_seq_cls(source: str, output: Path) -> Path:
    """Write the converted checkpoint to `output` (created; must not hold a checkpoint)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = resolve(source)
    if detect_format(src) != "acecode-rm":
        raise ValueError(f"{source} is not an AceCode-RM checkpoint: nothing to convert")
    output = Path(output)
    if (output / "config.json").exists():
        raise ValueError(f"{output} already holds a checkpoint; choose an empty directory")
    output.mkdir(parents=True, exist_ok=True)

    config = json.loads((src / "config.json").read_text())
    arch = (config.get("architectures") or ["?"])[0]
    family = arch.removesuffix("ForCausalLM") if arch.endswith("ForCausalLM") else None
    if family is None:
        family = {"qwen2": "Qwen2", "llama": "Llama", "mistral": "Mistral", "qwen3": "Qwen3",
                  "gemma": "Gemma", "gemma2": "Gemma2", "phi3": "Phi3"}.get(
            config.get("model_type", ""))
    if family is None:
        raise ValueError(f"{source}: cannot tell the model family of architecture {arch!r} "
                         f"(model_type {config.get('model_type')!r})")

    weights = {}
    bias = 0.0
    for f in sorted(src.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key == HEAD_PREFIX + "weight":
                    weights["score.weight"] = st.get_tensor(key).reshape(1, -1).contiguous()
                elif key == HEAD_PREFIX + "bias":
                    bias = float(st.get_tensor(key).reshape(-1)[0])
                elif key.startswith("lm_head."):
                    continue
                else:
                    weights[key] = st.get_tensor(key).contiguous()
    if "score.weight" not in weights:
        raise ValueError(f"{source}: no {HEAD_PREFIX}weight found")
    save_file(weights, str(output / "model.safetensors"), metadata={"format": "pt"})

    config["architectures"] = [f"{family}ForSequenceClassification"]
    config["num_labels"] = 1
    config["id2label"] = {"0": "LABEL_0"}
    config["label2id"] = {"LABEL_0": 0}
    config["score_bias"] = bias
    config["tie_word_embeddings"] = False  # there is no LM head left to tie
    (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in _COPY:
        if (src / name).is_file():
            shutil.copy2(src / name, output / name)
    meta = read_metadata(src)
    (output / METADATA_FILE).write_text(json.dumps({
        "format": "seq-cls", "head_trained": bool(meta.get("head_trained", True)),
        "score_bias": bias, "converted_from": source,
        **{k: v for k, v in meta.items() if k in ("base_model", "head")},
    }, indent=2) + "\n")
    return output
