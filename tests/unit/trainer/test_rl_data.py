"""The RL trainer's data position, prompt sources, micro-batch collation and settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from acecoder.jsonl import InputError
from acecoder.trainer import rl_data, rollout
from acecoder.trainer.recipes.reinforce_pp import RLTrainConfig

ROOT = Path(__file__).resolve().parents[3]


def test_each_epoch_walks_a_fresh_permutation_and_a_step_is_a_pure_function() -> None:
    n, per_step = 10, 4
    stream = [i for step in range(5) for i in rl_data.step_indices(n, step, per_step, seed=3)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # reshuffled each epoch
    # a resumed run asks for step 3 alone and gets what the uninterrupted run got
    assert rl_data.step_indices(n, 3, per_step, seed=3) == stream[12:16]
    assert rl_data.step_indices(n, 3, per_step, seed=4) != stream[12:16]
    assert rl_data.epoch_of(5, per_step, n) == 2.0


def test_prompt_sources() -> None:
    warm = rl_data.read_prompts(rl_data.EMBEDDED_WARMUP)
    assert len(warm) == 12 and all(p.tests and p.messages[0]["role"] == "user" for p in warm)
    mbpp = rl_data.read_prompts(rl_data.EMBEDDED_MBPP, limit=3)
    assert len(mbpp) == 3
    assert mbpp[0].tests[0] in mbpp[0].messages[0]["content"]  # the function's name is shown
    assert not mbpp[0].question.startswith("'")


def test_bad_prompt_records_are_reported_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "question": "q", "test_cases": ["assert True"]},
        {"id": "b", "question": "q", "test_cases": []},
        {"id": "c", "question": "q", "test_cases": ["assert 1"], "context_messages": "hi"},
    ]) + "\n")
    with pytest.raises(InputError) as err:
        rl_data.read_prompts(path)
    assert ":2:" in str(err.value) and "empty" in str(err.value)
    assert ":3:" in str(err.value) and "context_messages" in str(err.value)
    with pytest.raises(ValueError, match="no such prompts file"):
        rl_data.read_prompts(tmp_path / "missing.jsonl")


def test_prompt_records_with_call_tests(tmp_path: Path) -> None:
    from acecoder.executor.types import CallTest

    path = tmp_path / "p.jsonl"
    truth = {"inputs": [[1, 2]], "outputs": [3]}
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "question": "q", "fn_name": "add", "test_cases": truth},
        {"id": "b", "question": "q", "fn_name": "add",
         "test_cases": [{"input": [1, 2], "output": 3}]},
        {"id": "c", "question": "q", "fn_name": "add", "test_cases": ["assert add(1, 2) == 3"]},
    ]) + "\n")
    with pytest.raises(InputError, match=":3:.*must be call tests"):
        rl_data.read_prompts(path)
    path.write_text("\n".join(path.read_text().splitlines()[:2]) + "\n")
    a, b = rl_data.read_prompts(path)
    assert a.tests == b.tests == (CallTest([1, 2], 3),) and a.fn_name == b.fn_name == "add"


def test_collate_undoes_split_for_rows_of_different_generations() -> None:
    rows = [([5, 6, 7], [8, 9]), ([1], [2, 3, 4, 0]), ([4, 4], [])]
    batch = rollout.collate(rows, pad=0)
    assert batch.prompt_len == 3 and batch.sequences.shape == (3, 7)
    assert rollout.split(batch) == rows
    assert batch.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    # left-padded prompts: positions count from each row's first real token
    assert torch.equal(batch.attention_mask[1], torch.tensor([0, 0, 1, 1, 1, 1, 1]))


def test_settings_are_checked_before_anything_loads(tmp_path: Path) -> None:
    ok = {"data": "embedded:warmup", "output": tmp_path, "executor": "127.0.0.1:1"}
    with pytest.raises(ValueError, match="multiple of train_batch"):
        RLTrainConfig(**ok, rollout_batch=3, samples_per_prompt=1, train_batch=2)
    with pytest.raises(ValueError, match="needs an executor"):
        RLTrainConfig(data="embedded:warmup", output=tmp_path)
    with pytest.raises(ValueError, match="needs an RM server"):
        RLTrainConfig(**ok, reward="mix")
    with pytest.raises(ValueError, match="estimator"):
        RLTrainConfig(**ok, estimator="grpo")
    with pytest.raises(ValueError, match="kl_estimator"):
        RLTrainConfig(**ok, kl_estimator="k4")
    with pytest.raises(ValueError, match="unknown setting"):
        RLTrainConfig.from_preset(None, **ok, learning_rate=1.0)


def test_the_gpu_preset_holds_acecoders_settings(tmp_path: Path) -> None:
    c = RLTrainConfig.from_preset(ROOT / "trainer/configs/rl_acecoder_gpu.json",
                                  data="hard.jsonl", output=tmp_path, executor="exec:50051")
    assert (c.model, c.rollout_batch, c.samples_per_prompt, c.train_batch) == (
        "Qwen/Qwen2.5-Coder-7B", 256, 8, 128)
    assert (c.lr, c.kl_coef, c.zero_stage, c.binary, c.dtype) == (5e-7, 0.01, 3, True,
                                                                  "bfloat16")
    # 256 x 8 samples in optimizer steps of 128: 16 updates per rollout
    assert c.rollout_batch * c.samples_per_prompt // c.train_batch == 16
    tiny = RLTrainConfig.from_preset(ROOT / "trainer/configs/rl_cpu_tiny.json",
                                     output=tmp_path, executor="exec:50051")
    assert tiny.data == rl_data.EMBEDDED_WARMUP and tiny.save_every == 1


def test_presets_by_name(tmp_path: Path) -> None:
    from acecoder.trainer.recipes.base import find_preset

    assert find_preset("rl_cpu_tiny") == find_preset(ROOT / "trainer/configs/rl_cpu_tiny.json")
    c = RLTrainConfig.from_preset(Path("rl_acecoder_gpu"), data="d", output=tmp_path,
                                  executor="e:1")
    assert c.lr == 5e-7
    with pytest.raises(ValueError, match="rl_cpu_tiny"):  # says which ones exist
        find_preset("rl_nope")
