"""The gateway's own error mapping, in process over ASGI: an unexpected failure is HTTP 500
with code INTERNAL, and the metrics count it as INTERNAL (once they said OK)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from acecoder.server.rm import gateway
from acecoder.server.rm.config import RewardConfig
from acecoder.models.reward import BatchStats, Encoded, ModelDescription
from acecoder.server.rm.service import RewardService


class BrokenBackend:
    """Encodes fine, fails on every forward: a bug on our side, as far as a caller can tell."""

    description = ModelDescription(model_id="broken", path="-", format="seq-cls",
                                   architecture="-", dtype="float32", device="cpu",
                                   max_length=100, head_trained=True, decoder=True)

    def encode(self, question: str, response: str) -> Encoded:
        return Encoded(tuple(range(len(question) + len(response))), len(question), False)

    def score(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        raise RuntimeError("the forward broke")

    def close(self) -> None:
        pass


def test_an_unexpected_failure_is_internal_and_counted_so() -> None:
    async def main() -> None:
        service = RewardService(RewardConfig(), backend=BrokenBackend())
        await service.start()
        gw = gateway.Gateway(service)
        query = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nr<|im_end|>"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app),
                                     base_url="http://gw") as http:
            r = await http.post("/get_reward", json={"query": [query]})
            assert r.status_code == 500 and r.json()["code"] == "INTERNAL"
            assert "the forward broke" not in r.text  # details stay in the log
            bad = await http.post("/get_reward", content=b"[" * 100_000 + b"]" * 100_000)
            assert bad.status_code == 400 and bad.json()["code"] == "INVALID_ARGUMENT"
        registry = service.metrics.registry
        count = registry.get_sample_value
        prefix = next(m.name for m in registry.collect() if m.name.endswith("requests"))
        assert count(f"{prefix}_total", {"method": "get_reward", "code": "INTERNAL"}) == 1
        assert not count(f"{prefix}_total", {"method": "get_reward", "code": "OK"})
        await service.close()

    asyncio.run(main())
