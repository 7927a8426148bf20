"""The reward service and gateway logic, over a small deterministic backend (the real models
are exercised in test_rm_models and the integration tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from acecoder.errors import InvalidArgument, Unavailable
from acecoder.models import templates
from acecoder.server.rm import gateway
from acecoder.server.rm.config import RewardConfig
from acecoder.models.reward import BatchStats, Encoded, ModelDescription
from acecoder.server.rm.service import RewardService, rank_key


class LengthBackend:
    """Scores an item by its response length: enough to check plumbing and ordering."""

    description = ModelDescription(model_id="length", path="-", format="seq-cls",
                                   architecture="-", dtype="float32", device="cpu",
                                   max_length=100, head_trained=True, decoder=True)

    def encode(self, question: str, response: str) -> Encoded:
        return Encoded(tuple(range(len(question) + len(response))), len(question), False)

    def score(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        return [float(e.response_len) for e in items]

    def close(self) -> None:
        pass


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_score_rerank_and_drain() -> None:
    async def main() -> None:
        service = RewardService(RewardConfig(max_items=3), backend=LengthBackend())
        with pytest.raises(Unavailable, match="loading"):
            await service.score([("q", "r")])
        await service.start()
        got = await service.score([("q", "ab"), ("q", "a")], ids=["x", "y"])
        assert [(s.id, s.score) for s in got] == [("x", 2.0), ("y", 1.0)]
        got = await service.rerank("q", ["a", "abc", "ab"])
        assert got.complete and [r.score for r in got.ranked] == [3.0, 2.0, 1.0]
        assert [r.index for r in got.ranked] == [1, 2, 0]
        assert [r.rank for r in got.ranked] == [0, 1, 2]
        with pytest.raises(InvalidArgument, match="budget_seconds must be > 0"):
            await service.rerank("q", ["a"], budget=0)
        with pytest.raises(InvalidArgument, match="no executor"):
            await service.rerank("q", ["a"], tests=["assert True"])
        with pytest.raises(InvalidArgument, match="limit is 3"):
            await service.score([("q", "r")] * 4)
        with pytest.raises(InvalidArgument, match="candidates is empty"):
            await service.rerank("q", [])
        service.begin_drain()
        with pytest.raises(Unavailable, match="draining"):
            await service.score([("q", "r")])
        assert await service.wait_idle(1)
        await service.close()

    run(main())


class SlowBackend(LengthBackend):
    """One item per forward, 0.3 s each: a budget runs out part way through."""

    def score(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        time.sleep(0.3 * len(items))
        return super().score(items, stats)


def test_a_budget_returns_the_best_so_far() -> None:
    async def main() -> None:
        service = RewardService(RewardConfig(max_batch_items=1, lanes=1),
                                backend=SlowBackend())
        await service.start()
        started = time.monotonic()
        got = await service.rerank("q", ["a", "abcd", "ab", "abc"], budget=0.45)
        took = time.monotonic() - started
        assert not got.complete and took < 0.6, took
        scored = [r for r in got.ranked if r.score is not None]
        assert 1 <= len(scored) < 4
        assert got.ranked[:len(scored)] == scored  # the scored ones rank first
        assert service.metrics.rerank_budget_expired._value.get() == 1
        # the abandoned items are dropped from the queue: the next call is not stuck behind
        later = await service.rerank("q", ["ab", "a"], budget=5)
        assert later.complete and [r.index for r in later.ranked] == [0, 1]
        await service.close()

    run(main())


def test_rank_key_orders_partial_results() -> None:
    # (score, pass rate): all-pass first, then untested, then by pass rate; unscored last
    # within a tier
    cands = [(0.9, 0.5), (None, 1.0), (0.1, 1.0), (0.8, None), (None, None), (0.2, 0.0)]
    order = sorted(range(len(cands)), key=lambda i: rank_key(*cands[i], i))
    assert order == [2, 1, 3, 4, 0, 5]


def test_gateway_parses_openrlhf_payloads() -> None:
    formats = gateway.policy_formats("auto")
    chatml = "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA!<|im_end|>\n"
    assert gateway.split_all([chatml], None, formats) == [("Q?", "A!")]
    with pytest.raises(InvalidArgument, match="non-empty list"):
        gateway.split_all("text", None, formats)
    with pytest.raises(InvalidArgument, match="as long as 'query'"):
        gateway.split_all([chatml], [], formats)
    with pytest.raises(InvalidArgument, match=r"query\[0\] must be a string"):
        gateway.split_all([3], None, formats)
    with pytest.raises(InvalidArgument, match=r"query\[0\]: .*chat formats"):
        gateway.split_all(["plain text"], None, formats)
    assert gateway.policy_formats("llama3") == (templates.LLAMA3,)
    with pytest.raises(ValueError, match="not auto, chatml, llama3 or a tokenizer"):
        gateway.policy_formats("/no/such/tokenizer")


def test_gateway_uses_a_policy_tokenizers_own_template(smol_tokenizer_dir: str) -> None:
    formats = gateway.policy_formats(smol_tokenizer_dir)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    query = tok.apply_chat_template([{"role": "user", "content": "Write f."},
                                     {"role": "assistant", "content": "def f(): pass"}],
                                    tokenize=False)
    assert gateway.split_all([query], None, formats[:1]) == [("Write f.", "def f(): pass")]


def test_reward_config_is_checked() -> None:
    with pytest.raises(ValueError, match="backend must be"):
        RewardConfig(backend="onnx")
    with pytest.raises(ValueError, match="max_length must be"):
        RewardConfig(max_length=3)
    with pytest.raises(ValueError, match="device must be"):
        RewardConfig(device="tpu")
    with pytest.raises(ValueError, match="engine must be one of"):
        RewardConfig(engine="paged")
    assert RewardConfig(lanes=0, device="cuda").effective_lanes == 1


def test_the_minilm_cross_encoder_through_the_batcher() -> None:
    from acecoder.models import reward as models

    reference = models.load("embedded:minilm-l6")
    items = [("Reverse a string.", "def rev(s): return s[::-1]"),
             ("Reverse a string.", "def rev(s): return s"),
             ("Add two numbers a and b, returning their sum.", "def add(a, b): return a + b")]
    want = [reference.forward_full([reference.encode(q, r)])[0] for q, r in items]

    async def main() -> list[float]:
        service = RewardService(RewardConfig(model="embedded:minilm-l6", max_wait_ms=50))
        await service.start()
        try:
            assert service.description.format == "seq-cls" and not service.description.decoder
            got = await asyncio.gather(*(service.score([it]) for it in items))
            return [g[0].score for g in got]
        finally:
            await service.close()

    assert run(main()) == pytest.approx(want, abs=1e-4)
