"""Reward-model formats: loading matches a straightforward reference forward, in every
batch shape, truncated or not, and `rm convert` keeps the scores."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from acecoder.models import convert, reward as models
from acecoder.server.rm.engine import TransformersEngine
from acecoder.models.reward import BatchStats
from tests.rm_checkpoints import chat_ids, make_seq_cls

ITEMS = [
    ("Write a function add(a, b) that returns a + b.", "def add(a, b):\n    return a + b\n"),
    ("Write a function add(a, b) that returns a + b.", "def add(a, b):\n    return a - b\n"),
    ("Write a function add(a, b) that returns a + b.", "```python\ndef add(a, b): return b+a\n```"),
    ("Reverse a string s.", "def rev(s):\n    return s[::-1]\n"),
    ("Reverse a string s.", "def rev(s):\n    out = ''\n    for c in s:\n        out = c + out\n"
                            "    return out\n"),
    ("Is n prime? Write is_prime(n) for integers n >= 0, handling 0 and 1.",
     "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))\n"),
]


@pytest.fixture(scope="module")
def tiny(tiny_acecode_rm):  # type: ignore[no-untyped-def]
    path, reference = tiny_acecode_rm
    return models.load(str(path)), reference


def test_acecode_rm_matches_the_reference_forward(tiny) -> None:  # type: ignore[no-untyped-def]
    model, reference = tiny
    assert model.description.format == "acecode-rm"
    assert model.description.head_trained  # no metadata: a released checkpoint
    for q, r in ITEMS:
        enc = model.encode(q, r)
        assert list(enc.ids) == chat_ids(model.tokenizer, q, r)
        assert model.forward_full([enc])[0] == pytest.approx(reference.reward(list(enc.ids)),
                                                             abs=1e-5)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "batched"])
def test_scores_are_batch_invariant_with_prefix_reuse(tiny, packed: bool) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny
    encoded = [model.encode(q, r) for q, r in ITEMS]
    alone = [model.forward_full([e])[0] for e in encoded]
    assert len(set(alone)) == len(alone)  # the head distinguishes the items
    engine = TransformersEngine(model, packed=packed, pack_tokens=64)
    stats = BatchStats()
    batch = engine.score(encoded, stats)
    assert batch == pytest.approx(alone, abs=1e-4)
    if packed:  # the first item starts cold; the others reuse at least the system prompt
        assert stats.prefix_misses == 1 and stats.prefix_hits == len(ITEMS) - 1
        assert stats.tokens < sum(len(e.ids) for e in encoded) * 0.7
    else:  # three distinct questions, each computed once
        assert stats.prefix_misses == 3 and stats.prefix_hits == 0
    order = list(range(len(encoded)))
    random.Random(0).shuffle(order)
    stats = BatchStats()
    shuffled = engine.score([encoded[i] for i in order], stats)
    assert stats.prefix_hits == (len(ITEMS) if packed else 3)  # all cached now
    assert [shuffled[order.index(i)] for i in range(len(encoded))] == pytest.approx(alone, abs=1e-4)
    for e, want in zip(encoded, alone, strict=True):
        assert engine.score([e])[0] == pytest.approx(want, abs=1e-4)
    # The plain path (no reuse) agrees too, in a right-padded batch of mixed lengths.
    assert model.forward_full(encoded) == pytest.approx(alone, abs=1e-4)


@pytest.mark.parametrize("packed", [True, False, None], ids=["packed", "batched", "no-reuse"])
def test_a_batch_reports_where_its_time_went(tiny, packed: bool | None) -> None:  # type: ignore[no-untyped-def]
    """The server's per-stage profile: every stage the engine ran is timed, and the stages
    lie within the call's own time."""
    import time

    model, _ = tiny
    engine = TransformersEngine(model, packed=bool(packed),
                                prefix_cache_bytes=0 if packed is None else 1 << 20)
    stats = BatchStats()
    started = time.perf_counter()
    engine.score([model.encode(q, r) for q, r in ITEMS], stats)
    elapsed = time.perf_counter() - started
    want = {None: {"forward"}, True: {"prefix_lookup", "forward", "head", "prefix_store"},
            False: {"prefix_lookup", "forward", "head"}}[packed]
    assert set(stats.seconds) == want
    assert all(s > 0 for s in stats.seconds.values()), stats.seconds
    assert sum(stats.seconds.values()) <= elapsed


def test_packing_defers_an_item_until_its_longer_twin_is_cached(tiny) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny
    body = "def f(x):\n" + "".join(f"    x = x + {k}\n" for k in range(12))
    pair = [model.encode("Write f.", body + "    return x\n"),
            model.encode("Write f.", body + "    return -x\n")]
    engine = TransformersEngine(model, packed=True, pack_tokens=4096)
    stats = BatchStats()
    got = engine.score(pair, stats)
    assert got == pytest.approx([model.forward_full([e])[0] for e in pair], abs=1e-4)
    # The second computed only what follows the shared body, not the whole sequence again.
    assert stats.tokens < len(pair[0].ids) + 16


def test_the_prefix_cache_stays_within_its_budget(tiny) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny
    for packed in (True, False):
        engine = TransformersEngine(model, prefix_cache_bytes=40_000, packed=packed)
        for i in range(6):
            engine.score([model.encode(f"Question number {i}: " + "x " * 20, "pass")])
        cache = engine.blocks if packed else engine.cache
        assert 0 < len(cache) < 6
        assert cache.bytes <= 40_000


def test_over_the_maximum_the_question_is_cut_from_the_left(tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, reference = tiny_acecode_rm
    model = models.load(str(path), max_length=64)
    question = "Please read all of this preamble first. " * 20 + "Write add(a, b)."
    enc = model.encode(question, "def add(a, b):\n    return a + b\n")
    assert enc.truncated and 56 <= len(enc.ids) <= 64
    text = model.tokenizer.decode(enc.ids)
    assert text.endswith("<|im_start|>assistant\ndef add(a, b):\n    return a + b\n<|im_end|>\n")
    assert "Write add(a, b)." in text  # the question's end survives
    assert model.forward_full([enc])[0] == pytest.approx(reference.reward(list(enc.ids)), abs=1e-5)
    short = model.encode("Write add(a, b).", "def add(a, b): return a + b")
    assert not short.truncated
    # A response longer than the limit keeps its end, where the score is read.
    long = model.encode("q", "\n".join(f"x{i} = {i}" for i in range(200)))
    assert long.truncated and len(long.ids) <= 64
    assert "x199 = 199" in model.tokenizer.decode(long.ids)


class CountingTokenizer:
    """A real tokenizer that counts the texts it is asked to tokenize."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.calls = 0

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner(*args, **kwargs)

    def encode(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.encode(*args, **kwargs)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


@pytest.mark.parametrize(("question", "response"), [
    pytest.param("Explain it all again. " * 3000 + "Write add.", "def add(a, b): return a + b",
                 id="long-question"),
    pytest.param("Write add.", "x = 1\n" * 5000 + "def add(a, b): return a + b", id="long-response"),
    pytest.param("Explain it all again. " * 3000, "x = 1\n" * 5000, id="both"),
])
def test_a_long_item_is_tokenized_once(tiny_acecode_rm, question: str, response: str) -> None:  # type: ignore[no-untyped-def]
    path, reference = tiny_acecode_rm
    model = models.load(str(path), max_length=64)
    model.tokenizer = counting = CountingTokenizer(model.tokenizer)
    enc = model.encode(question, response)
    assert counting.calls == 1
    assert enc.truncated and len(enc.ids) == 64
    text = counting.decode(enc.ids)
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>user\n" in text
    assert text.endswith(response[-20:] + "<|im_end|>\n")  # the score is read at the end
    # the prefix is what precedes the response: the conversation up to the assistant header
    assert counting.decode(enc.ids[:enc.prefix_len]).endswith("<|im_start|>assistant\n")
    assert model.forward_full([enc])[0] == pytest.approx(reference.reward(list(enc.ids)), abs=1e-5)


def test_an_encoder_pair_is_tokenized_once_and_cut_like_the_tokenizer() -> None:
    model = models.load("embedded:minilm-l6", max_length=64)
    tok = model.tokenizer
    model.tokenizer = counting = CountingTokenizer(tok)
    for q, r in [("w " * 100, "y " * 20), ("w " * 20, "y " * 100), ("w " * 100, "y " * 61),
                 ("w " * 31, "y " * 100), ("w " * 30, "y " * 100), ("q", "r")]:
        counting.calls = 0
        enc = model.encode(q, r)
        assert counting.calls == 1
        side = tok.truncation_side
        tok.truncation_side = "left"
        try:
            try:  # what the tokenizer itself makes of the pair (in two calls)
                want = tok(q, r, truncation="only_first", max_length=64)
            except Exception:
                want = tok(q, r, truncation="longest_first", max_length=64)
        finally:
            tok.truncation_side = side
        assert (list(enc.ids), list(enc.type_ids)) == (want["input_ids"], want["token_type_ids"])
        assert enc.truncated == (len(tok(q, r)["input_ids"]) > 64)


def test_one_label_sequence_classifier(tmp_path: Path, smol_tokenizer_dir: str) -> None:
    reference = make_seq_cls(tmp_path, smol_tokenizer_dir)
    model = models.load(str(tmp_path))
    assert model.description.format == "seq-cls" and model.decoder
    encoded = [model.encode(q, r) for q, r in ITEMS]
    with torch.inference_mode():
        want = [reference(input_ids=torch.tensor([list(e.ids)])).logits[0, 0].item()
                for e in encoded]
    assert model.forward_full(encoded) == pytest.approx(want, abs=1e-5)
    assert TransformersEngine(model).score(encoded) == pytest.approx(want, abs=1e-4)


def test_convert_keeps_the_scores(tmp_path: Path, tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, reference = tiny_acecode_rm
    out = convert.to_seq_cls(str(path), tmp_path / "seqcls")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForSequenceClassification"]
    assert config["num_labels"] == 1 and config["score_bias"] == pytest.approx(0.25)
    converted = models.load(str(out))
    assert converted.description.format == "seq-cls"
    from transformers import AutoModelForSequenceClassification

    plain = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    for q, r in ITEMS:
        ids = chat_ids(converted.tokenizer, q, r)
        want = reference.reward(ids)
        assert converted.forward_full([converted.encode(q, r)])[0] == pytest.approx(want, abs=1e-5)
        with torch.inference_mode():  # plain transformers: the same score less the bias
            logit = plain(input_ids=torch.tensor([ids])).logits[0, 0].item()
        assert logit + 0.25 == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        convert.to_seq_cls(str(path), out)
    with pytest.raises(ValueError, match="not an AceCode-RM checkpoint"):
        convert.to_seq_cls(str(out), tmp_path / "again")


def test_the_embedded_minilm_cross_encoder() -> None:
    model = models.load("embedded:minilm-l6")
    d = model.description
    assert d.format == "seq-cls" and not d.decoder and not d.head_trained
    assert "UNTRAINED" in d.warning
    encoded = [model.encode(q, r) for q, r in ITEMS]
    alone = [model.forward_full([e])[0] for e in encoded]
    assert model.forward_full(encoded) == pytest.approx(alone, abs=1e-4)
    long = model.encode("word " * 1000, "def f(): pass")
    assert long.truncated and len(long.ids) == d.max_length
    assert model.tokenizer.decode(long.ids).endswith("def f ( ) : pass [SEP]")


def test_the_embedded_smollm2_is_a_real_acecode_rm_with_the_shipped_head(smol_dir: str) -> None:
    model = models.load("embedded:smollm2-135m")
    d = model.description
    assert (d.format, d.decoder, d.head_trained) == ("acecode-rm", True, True)
    # the shipped head is the one that was trained: it orders held-out MbppBase pairs as its
    # card says (the card's accuracy is over all held-out pairs; these are a sample)
    import json

    from acecoder.datasets import load_mbpp, wrong_variants
    from acecoder.trainer import rm_data

    meta = json.loads((Path(d.path) / "acecoder_rm.json").read_text())
    assert meta["head"]["held-out accuracy (trained)"] >= 0.8
    pairs = [rm_data.Pair(f"{p.task_id}/{k}", p.question, p.program, w)
             for p in load_mbpp() if p.question for k, w in enumerate(wrong_variants(p)[:1])]
    _, held = rm_data.split(pairs, 0.2)
    sample = held[:12]
    chosen = model.forward_full([model.encode(x.question, x.chosen) for x in sample])
    rejected = model.forward_full([model.encode(x.question, x.rejected) for x in sample])
    assert sum(c > r for c, r in zip(chosen, rejected, strict=True)) >= 9
    assert Path(d.path) == Path(smol_dir)
    assert model.backbone.config.num_hidden_layers == 30  # the real 135M model, not a toy
    enc = [model.encode(q, r) for q, r in ITEMS[:3]]
    alone = [model.forward_full([e])[0] for e in enc]
    assert TransformersEngine(model).score(enc) == pytest.approx(alone, abs=1e-4)


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda p, t: make_seq_cls(p, t, labels=2), "2 labels", id="two-labels"),
    pytest.param(lambda p, t: (p / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})),
        "no .safetensors", id="no-weights"),
])
def test_what_is_not_a_reward_model_is_refused(tmp_path: Path, smol_tokenizer_dir: str,
                                               make, message: str) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path, smol_tokenizer_dir)
    with pytest.raises(ValueError, match=message):
        models.load(str(tmp_path))


def test_a_causal_lm_without_a_value_head_is_refused(tmp_path: Path, smol_tokenizer_dir: str) -> None:
    from transformers import Qwen2ForCausalLM

    from tests.rm_checkpoints import tiny_config

    Qwen2ForCausalLM(tiny_config(100)).save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="neither an AceCode-RM checkpoint"):
        models.load(str(tmp_path))


def test_unknown_names_say_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="embedded:smollm2-135m"):
        models.resolve("embedded:nope")
    with pytest.raises(ValueError, match="neither a checkpoint directory nor a hub id"):
        models.resolve(str(tmp_path / "missing" / "dir"))
    with pytest.raises(ValueError, match="without config.json"):
        models.resolve(str(tmp_path))
    # A hub id goes to the hub; with none reachable the error says to pass a local directory.
    with pytest.raises(ValueError, match="pass its local directory"):
        models.resolve("TIGER-Lab/AceCodeRM-7B")
    with pytest.raises(ValueError, match="dtype must be"):
        models.resolve_dtype("int3", "cpu")
