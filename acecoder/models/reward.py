"""Reward-model checkpoints: find them, tell their format, load them, and encode inputs.

Two formats are served:

- ``acecode-rm``: a causal LM checkpoint (Qwen2 for the released AceCodeRM-7B/32B) whose
  weights also hold ``v_head.summary.{weight,bias}``, a ``Linear(hidden, 1, bias=True)``; the
  score is that head applied to the backbone's last hidden state at the last real token of
  the chat-templated (question, program) conversation.
- ``seq-cls``: a ``*ForSequenceClassification`` checkpoint with one label (Skywork-Reward
  style). Decoders are scored the same way (their ``score`` head at the last real token);
  encoders (the MiniLM cross-encoder) take (question, program) as a text pair.

An ``acecoder_rm.json`` file next to the weights may say ``{"head_trained": false}``; a
checkpoint without it is taken as trained (that is how released reward models come).
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import HEAD_PREFIX, METADATA_FILE

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_SENTINEL = "\u2063ACECODER_RESPONSE\u2063"
_QUESTION_SENTINEL = "\u2063ACECODER_QUESTION\u2063"


@dataclass(frozen=True, kw_only=True)
class ModelDescription:
    """What a loaded reward model is, for ModelInfo and logs."""

    model_id: str
    path: str
    format: str
    architecture: str
    dtype: str
    device: str
    max_length: int
    head_trained: bool
    decoder: bool

    @property
    def warning(self) -> str:
        if self.head_trained:
            return ""
        return ("the reward head of this model is UNTRAINED (random initialisation): its scores "
                "are deterministic but carry no meaning until it is trained")


@dataclass(frozen=True)
class Encoded:
    """One item, tokenized as the model will see it.

    For decoders `ids[:prefix_len]` is everything before the response (system prompt,
    question, assistant header): items that share it share its keys and values.
    """

    ids: tuple[int, ...]
    prefix_len: int
    truncated: bool
    type_ids: tuple[int, ...] = ()

    @property
    def prefix(self) -> tuple[int, ...]:
        return self.ids[:self.prefix_len]

    @property
    def response_len(self) -> int:
        return len(self.ids) - self.prefix_len


@dataclass
class BatchStats:
    """What one engine call did, for metrics."""

    items: int = 0
    tokens: int = 0
    """Tokens the forward computed, padding included."""
    useful_tokens: int = 0
    """Computed tokens that are not padding."""
    real_tokens: int = 0
    """Tokens of the items scored (a reused prefix counts for every item that uses it)."""
    prefix_hits: int = 0
    prefix_misses: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds by stage (prefix_lookup, forward, head), for the server's profile."""

    def timed(self, stage: str, since: float) -> float:
        """Add the time from `since` (time.perf_counter()) to `stage`; returns now."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


def resolve(model: str) -> Path:
    """A local directory for `model`: an existing directory, an embedded model name
    (``embedded:smollm2-135m``, ``embedded:minilm-l6``), or a hub id (downloaded once)."""
    if model.startswith("embedded:"):
        from . import embedded

        return embedded.ensure(model.removeprefix("embedded:"))
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{model} is a directory without config.json: not a model checkpoint")
        return path
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ValueError(f"model {model!r} is neither a checkpoint directory nor a hub id "
                         "(owner/name) nor an embedded model (embedded:smollm2-135m, "
                         "embedded:minilm-l6)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, allow_patterns=[
            "*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]))
    except Exception as exc:  # network, auth, missing repo: all mean "give me a local path"
        raise ValueError(
            f"could not fetch {model!r} from the model hub ({type(exc).__name__}: {exc}); "
            "download it elsewhere and pass its local directory") from None


def _weight_names(path: Path) -> set[str]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    names: set[str] = set()
    from safetensors import safe_open

    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            names.update(st.keys())
    return names


def _read_head(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    found: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key.startswith(HEAD_PREFIX):
                    found[key.removeprefix(HEAD_PREFIX)] = st.get_tensor(key)
    return found


def detect_format(path: Path) -> str:
    """'acecode-rm' or 'seq-cls'; ValueError for anything else."""
    config = json.loads((path / "config.json").read_text())
    archs = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)
        if labels != 1:
            raise ValueError(f"{path} is a sequence classifier with {labels} labels; a reward "
                             "model has exactly one")
        return "seq-cls"
    if not list(path.glob("*.safetensors")):
        raise ValueError(f"{path} has no .safetensors weights (convert .bin checkpoints first)")
    if any(n.startswith(HEAD_PREFIX) for n in _weight_names(path)):
        return "acecode-rm"
    raise ValueError(f"{path} ({', '.join(archs) or 'no architecture'}) is neither an "
                     f"AceCode-RM checkpoint (no {HEAD_PREFIX}* weights) nor a one-label "
                     "*ForSequenceClassification model")


def has_value_head(path: Path) -> bool:
    """Whether the checkpoint's safetensors hold AceCode-RM head weights (v_head.summary.*)."""
    return any(n.startswith(HEAD_PREFIX) for n in _weight_names(path))


def read_metadata(path: Path) -> dict[str, Any]:
    meta = path / METADATA_FILE
    return json.loads(meta.read_text()) if meta.is_file() else {}


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16; got {dtype!r}")
    return table[dtype]


class RewardModel:
    """A reward model in memory: tokenizer, backbone, scalar head.

    `encode` turns (question, response) into token ids the way the checkpoint expects;
    `forward_full` is the straightforward scoring of encoded items (reference semantics);
    the batching engine reaches the backbone and head directly to reuse prefixes.
    """

    def __init__(self, *, tokenizer: Any, backbone: Any, head: Any, description: ModelDescription,
                 full_model: Any = None) -> None:
        self.tokenizer = tokenizer
        self.backbone = backbone
        self.head = head
        self.description = description
        self.full_model = full_model  # encoders: the whole *ForSequenceClassification module
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad)
        self._question_frame_parts: tuple[str, str] | None = None

    @property
    def decoder(self) -> bool:
        return self.description.decoder

    @property
    def max_length(self) -> int:
        return self.description.max_length

    # -- encoding -------------------------------------------------------------------------

    def _render(self, question: str, response: str) -> str:
        return str(self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}, {"role": "assistant", "content": response}],
            tokenize=False))

    def _split_template(self, question: str) -> tuple[str, str]:
        """The rendered conversation's text before and after the response."""
        text = self._render(question, _SENTINEL)
        if text.count(_SENTINEL) != 1:
            raise ValueError("the model's chat template does not place the assistant message "
                             "verbatim in its output; it cannot be served")
        before, after = text.split(_SENTINEL)
        return before, after

    def _question_frame(self) -> tuple[str, str]:
        """The template's text before and after the question, up to the response (the same
        for every question: rendered once, with sentinels). ("", "") when the template does
        not copy the question verbatim."""
        if self._question_frame_parts is None:
            before, _ = self._split_template(_QUESTION_SENTINEL)
            parts = before.split(_QUESTION_SENTINEL)
            self._question_frame_parts = (parts[0], parts[1]) if len(parts) == 2 else ("", "")
        return self._question_frame_parts

    def encode(self, question: str, response: str) -> Encoded:
        """Tokenize one item with ONE tokenizer call, however long it is. Over max_length,
        question tokens go from the left, then response tokens from the left, keeping the
        template's markers and the response's end (where the score is read)."""
        if not self.decoder:
            return self._encode_pair(question, response)
        before, after = self._split_template(question)
        enc = self.tokenizer(before + response + after, add_special_tokens=False,
                             return_offsets_mapping=True)
        ids: list[int] = list(enc["input_ids"])
        starts = [start for start, _ in enc["offset_mapping"]]
        ends = [end for _, end in enc["offset_mapping"]]
        # A token is prefix only if it ends before the response starts: the prefix is then
        # exactly the leading tokens of the whole text's tokenization.
        prefix_len = bisect.bisect_right(ends, len(before))
        over = len(ids) - self.max_length
        if over <= 0:
            return Encoded(tuple(ids), min(prefix_len, len(ids) - 1), False)
        # Cut the ids of this one tokenization: re-tokenizing a cut text costs a whole
        # tokenization per try, seconds for a long item.
        head, mid = self._question_frame()
        if (head or mid) and before.startswith(head) and before.endswith(mid) and \
                len(head) + len(mid) <= len(before):
            # question tokens: those within it (one that straddles its start keeps the
            # template's characters)
            first = bisect.bisect_left(starts, len(head))
            last = bisect.bisect_right(ends, len(before) - len(mid))
        else:  # a template whose frame changes with the question: cut the response only
            first = last = 0
        drop = min(over, max(0, last - first))
        del ids[first:first + drop]
        prefix_len -= drop
        over -= drop
        if over > 0:  # the response alone is too long: keep its end
            response_end = bisect.bisect_right(ends, len(before) + len(response)) - drop
            cut = min(over, max(0, response_end - prefix_len - 1))
            del ids[prefix_len:prefix_len + cut]
            over -= cut
        if over > 0:  # the template alone is too long
            del ids[:over]
            prefix_len = max(0, prefix_len - over)
        return Encoded(tuple(ids), min(prefix_len, len(ids) - 1), True)

    def _encode_pair(self, question: str, response: str) -> Encoded:
        """Encoders take (question, response) as a text pair; over max_length the question
        loses its start (its end and the whole response stay), or when the response alone
        fills the limit, the longer of the two does. One tokenizer call: the cut is made on
        its ids."""
        enc = self.tokenizer(question, response)
        ids: list[int] = list(enc["input_ids"])
        types: list[int] = list(enc.get("token_type_ids") or ())
        if len(ids) <= self.max_length:
            return Encoded(tuple(ids), 0, False, tuple(types))
        seq = enc.sequence_ids(0)
        n_q, n_r = seq.count(0), seq.count(1)
        room = max(2, self.max_length - (len(ids) - n_q - n_r))
        keep_q, keep_r = pair_budget(n_q, n_r, room)
        # each sequence's tokens are contiguous (and may be none: BERT drops control
        # characters)
        q0 = seq.index(0) if n_q else 0
        r0 = seq.index(1) if n_r else len(ids)
        keep = [*range(q0), *range(q0 + n_q - keep_q, r0), *range(r0 + n_r - keep_r, len(ids))]
        return Encoded(tuple(ids[i] for i in keep), 0, True,
                       tuple(types[i] for i in keep) if types else ())

    # -- reference scoring ----------------------------------------------------------------

    def pad(self, items: list[Encoded]) -> dict[str, Any]:
        """Right-padded tensors of a batch (on the model's device): input_ids, attention_mask,
        token_type_ids, and `last`, each item's last real position."""
        import torch

        device = self.description.device
        n = len(items)
        width = max(len(e.ids) for e in items)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        types = torch.zeros((n, width), dtype=torch.long)
        for i, e in enumerate(items):
            ids[i, :len(e.ids)] = torch.tensor(e.ids)
            mask[i, :len(e.ids)] = 1
            if e.type_ids:
                types[i, :len(e.type_ids)] = torch.tensor(e.type_ids)
        last = torch.tensor([len(e.ids) - 1 for e in items])
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device),
                "token_type_ids": types.to(device), "last": last.to(device)}

    def score_batch(self, batch: dict[str, Any]) -> Any:
        """[B] scores of a padded batch, with autograd (the trainer's forward)."""
        import torch

        if not self.decoder:
            out = self.full_model(input_ids=batch["input_ids"],
                                  attention_mask=batch["attention_mask"],
                                  token_type_ids=batch["token_type_ids"])
            return out.logits[:, 0]
        hidden = self.backbone(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.head(hidden[rows, batch["last"]]).squeeze(-1)

    def forward_full(self, items: list[Encoded]) -> list[float]:
        """Score items with plain right-padded forwards (no prefix reuse)."""
        import torch

        with torch.inference_mode():
            return self.score_batch(self.pad(items)).float().tolist()


def load(model: str, *, dtype: str = "auto", device: str = "cpu",
         max_length: int | None = None) -> RewardModel:
    """Load a reward model for the transformers backend."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )
    from transformers.utils import logging as hf_logging

    path = resolve(model)
    fmt = detect_format(path)
    meta = read_metadata(path)
    hf_logging.set_verbosity_error()  # its load report lists the head as unexpected keys
    torch_dtype = resolve_dtype(dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    config = AutoConfig.from_pretrained(str(path))
    full_model = None
    if fmt == "acecode-rm":
        backbone = AutoModel.from_pretrained(str(path), dtype=torch_dtype)
        weights = _read_head(path)
        if set(weights) != {"weight", "bias"}:
            raise ValueError(f"{path}: {HEAD_PREFIX}* must hold weight and bias, found "
                             f"{sorted(weights)}")
        hidden = weights["weight"].shape[-1]
        head = torch.nn.Linear(hidden, 1, bias=True)
        head.load_state_dict(weights)
        decoder = True
        arch = f"{type(backbone).__name__} + v_head.summary"
    else:
        clf = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch_dtype)
        arch = type(clf).__name__
        score = getattr(clf, "score", None)
        if isinstance(score, torch.nn.Linear) and not config.is_encoder_decoder:
            # Decoder classifiers read the last real token: serve them like AceCode-RM.
            # (full_model keeps the whole classifier, for saving it after training.)
            backbone, head, decoder, full_model = clf.base_model, score, True, clf
            bias = float(meta.get("score_bias", getattr(config, "score_bias", 0.0)) or 0.0)
            if bias and score.bias is None:  # a converted AceCode-RM head (see convert.py)
                head = torch.nn.Linear(score.in_features, 1, bias=True)
                with torch.no_grad():
                    head.weight.copy_(score.weight)
                    head.bias.fill_(bias)
        else:
            backbone, head, decoder, full_model = None, None, False, clf
    limit = max_length or _default_max_length(config, tokenizer)
    for m in (backbone, head, full_model):
        if m is not None:
            m.to(device=device, dtype=torch_dtype).eval()
            m.requires_grad_(False)
    description = ModelDescription(
        model_id=model, path=str(path), format=fmt, architecture=arch,
        dtype=str(torch_dtype).removeprefix("torch."), device=device, max_length=limit,
        head_trained=bool(meta.get("head_trained", True)), decoder=decoder)
    if not description.head_trained:
        logger.warning("%s: %s", model, description.warning)
    return RewardModel(tokenizer=tokenizer, backbone=backbone, head=head,
                       description=description, full_model=full_model)


def pair_budget(n_question: int, n_response: int, room: int) -> tuple[int, int]:
    """(question, response) tokens an encoder keeps of a pair within `room` tokens, as the
    tokenizer's only_first, and longest_first where that cannot work, would: the question
    is cut first; when the response alone fills the room, the shorter of the two stays
    whole if it takes at most half the room, else each gets half (the longer the odd
    token)."""
    if n_question + n_response <= room:
        return n_question, n_response
    if n_response < room:
        return room - n_response, n_response
    shorter = min(n_question, n_response, room // 2)
    longer = room - shorter
    return (longer, shorter) if n_question >= n_response else (shorter, longer)


def _default_max_length(config: Any, tokenizer: Any) -> int:
    limits = [getattr(config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
    return min([4096, *usable])
