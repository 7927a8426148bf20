"""`acecoder score` and `rerank` against a running RM server (`open_model`): a record the
server refuses (INVALID_ARGUMENT, raised by the client as acecoder's InvalidArgument) is written
with its error, and the others are scored or ranked. Over a tiny real server on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from acecoder.server.rm import offline, rerank
from acecoder.server.rm.config import RewardConfig
from acecoder.server.rm.main import RewardServer, RewardServerConfig
from tests.unit.server.rm.test_rm_service import LengthBackend


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read(path: Path) -> dict[str, dict[str, object]]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_refused_records_are_written_with_their_error(tmp_path: Path) -> None:
    pairs = write(tmp_path / "pairs.jsonl", [
        {"id": "ok", "question": "q", "response": "abc"},
        {"id": "empty", "question": "", "response": "abc"}])
    questions = write(tmp_path / "questions.jsonl", [
        {"id": "ok", "question": "q", "candidates": ["a", "abc", "ab"]},
        {"id": "empty", "question": "q", "candidates": ["a", " "]}])

    async def main() -> tuple[dict[str, int], dict[str, int]]:
        server = RewardServer(RewardConfig(), RewardServerConfig(port=0),
                              backend=LengthBackend())
        await server.start()
        await server.ready.wait()
        target = f"127.0.0.1:{server.port}"
        try:
            scored = await offline.run(pairs, tmp_path / "scores.jsonl", RewardConfig(),
                                       server=target, progress=False)
            ranked = await rerank.run(questions, tmp_path / "ranked.jsonl", RewardConfig(),
                                      server=target, progress=False)
            return scored, ranked
        finally:
            await server.stop()

    scored, ranked = asyncio.run(main())
    assert (scored["scored"], scored["invalid"]) == (1, 1)
    scores = read(tmp_path / "scores.jsonl")
    assert scores["ok"] == {"id": "ok", "score": 3.0}
    assert scores["empty"]["score"] is None
    assert "items[0].question is empty" in str(scores["empty"]["error"])
    assert (ranked["ranked"], ranked["invalid"]) == (1, 1)
    rows = read(tmp_path / "ranked.jsonl")
    assert rows["ok"]["best"] == 1 and [r["index"] for r in rows["ok"]["ranked"]] == [1, 2, 0]
    assert rows["empty"]["best"] is None
    assert "candidates[1].response is empty" in str(rows["empty"]["error"])
