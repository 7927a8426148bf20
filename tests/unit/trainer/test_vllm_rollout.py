"""VllmRollout once closed (no vLLM engine needed): it refuses work with a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from acecoder.trainer.vllm_rollout import VllmRollout


def test_a_closed_engine_refuses_generate_and_sync(tmp_path: Path) -> None:
    engine = VllmRollout.__new__(VllmRollout)  # the state close() leaves, without a vLLM start
    engine.llm = None
    engine.syncs = 0
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate([[1, 2]], samples=1, temperature=0.0, max_new_tokens=1, seed=0, pad=0)
    with pytest.raises(RuntimeError, match="closed"):
        engine.sync([], tmp_path / "weights")
    assert not (tmp_path / "weights").exists() and engine.syncs == 0
    engine.close()  # a second close is harmless
