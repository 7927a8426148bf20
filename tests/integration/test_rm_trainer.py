"""`acecoder train rm` end to end on tiny checkpoints in the released formats: DeepSpeed on
CPU (one process, and two under torchrun with ZeRO-3), held-out accuracy, and a saved model
that the RM server loads and scores exactly as the trainer did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def write_pairs(path: Path, n: int = 48) -> list[dict[str, str]]:
    """An easy, learnable preference: a function that computes its answer beats a stub."""
    rows = [{"id": f"p{k}", "instruction": f"Write f{k}(a, b) returning a + b + {k}.",
             "input": "", "chosen": f"def f{k}(a, b):\n    return a + b + {k}\n",
             "rejected": f"def f{k}(a, b):\n    pass\n"} for k in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def train(tmp: Path, model: str, *extra: str, launcher: list[str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    cmd = [*(launcher or [sys.executable, "-m"]), "acecoder.cli", "train", "rm", "--data",
           str(tmp / "pairs.jsonl"), "--output", str(tmp / "out"), "--model", model,
           "--preset", "trainer/configs/rm_cpu_tiny.json", "--epochs", "3", "--lr", "1e-3",
           "--global-batch", "8", "--max-length", "128", "--quiet", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env,
                          cwd=Path(__file__).resolve().parents[2])


def held_out_margin(out: Path, pairs: list[dict[str, str]], held: int) -> tuple[float, int]:
    """(mean chosen - rejected score, correctly ordered pairs) of the saved model, on the
    held-out pairs, through the RM server's own loader."""
    from acecoder.models import reward as models
    from acecoder.trainer import rm_data

    rm = models.load(str(out))
    assert rm.description.head_trained
    _, test = rm_data.split([rm_data.Pair(p["id"], p["instruction"], p["chosen"], p["rejected"])
                             for p in pairs], 0.2)
    assert len(test) == held
    chosen = rm.forward_full([rm.encode(p.question, p.chosen) for p in test])
    rejected = rm.forward_full([rm.encode(p.question, p.rejected) for p in test])
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return sum(margins) / len(margins), sum(m > 0 for m in margins)


def last_eval(out: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/train" in r for r in rows)
    return [r for r in rows if "accuracy/eval" in r][-1]


def test_an_acecode_rm_learns_and_is_served_as_trained(tmp_path: Path, tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    init, _ = tiny_acecode_rm
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    done = train(tmp_path, str(init), "--zero", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    ev = last_eval(out)
    assert ev["accuracy/eval"] >= 0.9  # chance is 0.5
    assert "held-out pairwise accuracy" in done.stderr
    margin, right = held_out_margin(out, pairs, int(ev["eval/pairs"]))
    assert margin == pytest.approx(ev["eval/margin"], rel=1e-4, abs=1e-4)  # same scores served
    assert right == ev["eval/pairs"] * ev["accuracy/eval"]
    meta = json.loads((out / "acecoder_rm.json").read_text())
    assert meta["format"] == "acecode-rm" and meta["training"]["optimizer steps"] > 0
    # the released layout: the causal LM's config and LM head, the trained v_head
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as st:
        names = set(st.keys())
    assert {"v_head.summary.weight", "v_head.summary.bias", "lm_head.weight"} <= names
    assert any(n.startswith("model.layers.") for n in names)
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (init / "config.json").read_text())
    assert "Bradley-Terry" in (out / "README.md").read_text()
    assert list((out / "tensorboard").iterdir())


def test_two_processes_with_zero3_under_torchrun(tmp_path: Path, tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    init, _ = tiny_acecode_rm
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    from acecoder.trainer.distributed import free_port

    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(free_port()), "-m"]
    try:
        done = train(tmp_path, str(init), "--zero", "3", "--micro-batch", "2",
                     launcher=launcher)
    finally:
        for leftover in Path("/dev/shm").glob("deepspeed_allreduce_buffer_*"):
            leftover.unlink(missing_ok=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ev = last_eval(tmp_path / "out")
    assert ev["accuracy/eval"] >= 0.9
    margin, _ = held_out_margin(tmp_path / "out", pairs, int(ev["eval/pairs"]))
    assert margin == pytest.approx(ev["eval/margin"], rel=1e-4, abs=1e-4)  # ZeRO-3 gathered


def plain_causal_lm(out: Path, tokenizer_dir: str) -> None:
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from tests.rm_checkpoints import tiny_config

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    Qwen2ForCausalLM(tiny_config(len(tok), pad_token_id=tok.pad_token_id)).save_pretrained(
        str(out))
    tok.save_pretrained(str(out))


def seq_cls(out: Path, tokenizer_dir: str) -> None:
    from tests.rm_checkpoints import make_seq_cls

    make_seq_cls(out, tokenizer_dir)


@pytest.mark.parametrize(("make", "saved_as"), [
    pytest.param(plain_causal_lm, "acecode-rm", id="causal-lm-gets-a-new-head"),
    pytest.param(seq_cls, "seq-cls", id="classifier-stays-one"),
])
def test_other_inits(tmp_path: Path, smol_tokenizer_dir: str, make, saved_as: str) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path / "init", smol_tokenizer_dir)
    write_pairs(tmp_path / "pairs.jsonl")
    done = train(tmp_path, str(tmp_path / "init"))
    assert done.returncode == 0, done.stderr[-3000:]
    from acecoder.models import reward as models

    rm = models.load(str(tmp_path / "out"))
    assert rm.description.format == saved_as and rm.description.head_trained
    assert last_eval(tmp_path / "out")["accuracy/eval"] >= 0.9


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "acecoder.cli", "train", "rm", *args],
                              capture_output=True, text=True, timeout=120)

    assert "data and output must be given" in run().stderr
    missing = run("--data", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "bad.json").write_text('{"learning_rate": 1}')
    bad = run("--data", "x", "--output", "y", "--preset", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "unknown setting(s) learning_rate" in bad.stderr
    zero = run("--data", "x", "--output", "y", "--lr", "0")
    assert zero.returncode == 2 and "lr must be > 0" in zero.stderr


def test_mbpp_pairs_put_the_reference_above_its_wrong_variants(server) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from acecoder.clients import AsyncExecutorClient
    from acecoder.datasets import load_mbpp, wrong_variants
    from acecoder.trainer import mbpp_pairs

    problems = [p for p in load_mbpp() if p.question][:6]

    async def main():  # type: ignore[no-untyped-def]
        async with AsyncExecutorClient(server.target, timeout=300) as ex:
            return await mbpp_pairs.build(ex, problems)

    pairs, counts = asyncio.run(main())
    assert counts["problems"] == 6 and counts["reference_fails"] == 0
    assert counts["variants"] == 18 and counts["pairs"] == 18 - counts["too_close"] > 6
    by_id = {p.task_id: p for p in problems}
    for pair in pairs:
        p = by_id[pair["id"].rsplit("/", 1)[0]]
        assert pair["chosen"] == p.program and pair["instruction"] == p.question
        assert pair["rejected"] in wrong_variants(p)
