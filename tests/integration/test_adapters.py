"""The reward adapters for verl, OpenRLHF and TRL against real executor and RM servers:
the calling conventions of each framework, and a per-sample error record (never an
exception) when a sample cannot be scored."""

from __future__ import annotations

import asyncio
import json

import pytest

from acecoder.clients.rewards import sigmoid
from acecoder.trainer.distributed import free_port

TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
GOOD = "Here:\n```python\ndef add(a, b):\n    return a + b\n```"
HALF = "def add(a, b):\n    return a * b\n"
DODGE = "import sys\nsys.exit(0)\n"


def test_verl_compute_score_and_batch(server) -> None:  # type: ignore[no-untyped-def]
    from acecoder.clients.verl import compute_score, compute_score_batch

    one = compute_score("acecode", GOOD, TESTS, {"question": "add"}, executor=server.target)
    assert one["score"] == 1.0 and one["ok"] and one["pass_rate"] == 1.0 and one["all_passed"]
    # ground truth as verl datasets carry it: a JSON string, or an object with setup
    got = compute_score_batch(
        data_sources=["a"] * 5, solution_strs=[GOOD, HALF, DODGE, GOOD, GOOD],
        ground_truths=[json.dumps(TESTS), {"tests": TESTS}, TESTS,
                       {"tests": ["assert sqrt(4) == 2"], "setup": "from math import sqrt"},
                       42],
        extra_infos=None, executor=server.target, binary=True)
    assert [g["score"] for g in got] == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert [g["pass_rate"] for g in got[:3]] == [1.0, 0.5, 0.0]
    assert got[2]["hacked"] and got[2]["flags"] == "EXITED_EARLY"
    assert got[3]["all_passed"]  # the setup ran: sqrt is defined for the test
    assert not got[4]["ok"] and "ground_truth" in got[4]["error"]  # a record, not a raise
    assert len({tuple(sorted(g)) for g in got}) == 1  # every record has the same keys


@pytest.mark.slow
def test_verl_with_the_rm_and_an_unreachable_executor(server, rm_target: str) -> None:  # type: ignore[no-untyped-def]
    from acecoder.clients.verl import compute_score

    mixed = compute_score("acecode", GOOD, TESTS, {"question": "Write add(a, b)."},
                          executor=server.target, rm=rm_target, reward="mix", rm_weight=0.5)
    assert mixed["ok"] and mixed["score"] == pytest.approx(0.5 * sigmoid(mixed["rm_score"]) + 0.5)
    gone = compute_score("acecode", GOOD, TESTS, executor=f"127.0.0.1:{free_port()}",
                         deadline=2)
    assert not gone["ok"] and gone["score"] == 0.0 and "executor" in gone["error"]
    with pytest.raises(ValueError, match=r"needs an RM server: set rm= \(ACECODER_RM\)"):
        compute_score("acecode", GOOD, TESTS, reward="rm")  # a configuration error: raised


def test_openrlhf_reward_func(server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from acecoder.clients.openrlhf import reward_func

    monkeypatch.setenv("ACECODER_EXECUTOR", server.target)
    prompt = "<|im_start|>user\nWrite add(a, b).<|im_end|>\n<|im_start|>assistant\n"
    queries = [prompt + r for r in (GOOD, HALF, DODGE, GOOD)]
    labels = [json.dumps(TESTS)] * 3 + ["not tests"]
    out = reward_func(queries, [prompt] * 4, labels)
    assert out["rewards"].tolist() == [1.0, 0.5, 0.0, 0.0]
    assert out["scores"].tolist() == [1.0, 0.5, 0.0, 0.0]
    assert float(out["extra_logs"]["acecoder/hacked"]) == 1.0
    # "not tests" is one line that is no assert: the executor calls it an error, not a pass
    monkeypatch.setenv("ACECODER_BINARY", "1")
    assert reward_func(queries[:2], [prompt] * 2, labels[:2])["rewards"].tolist() == [1.0, 0.0]


def test_openrlhf_reward_func_with_rm_scores(server, rm_target: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The RM sees the question and the answer without the policy's chat markers, as the
    gateway gives them, so both paths score a sample alike."""
    from acecoder.clients import RewardClient
    from acecoder.clients.openrlhf import reward_func

    monkeypatch.setenv("ACECODER_REWARD", "rm")
    monkeypatch.setenv("ACECODER_RM", rm_target)
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWrite add(a, b)." \
             "<|im_end|>\n<|im_start|>assistant\n"
    queries = [prompt + r + "<|im_end|>" for r in (GOOD, HALF)]
    out = reward_func(queries, [prompt] * 2, [json.dumps(TESTS)] * 2)
    with RewardClient(rm_target) as rm:
        want = [s.score for s in rm.score([("Write add(a, b).", GOOD), ("Write add(a, b).", HALF)])]
    assert out["rewards"].tolist() == pytest.approx(want, abs=1e-5)
    assert float(out["extra_logs"]["acecoder/failed"]) == 0.0
    monkeypatch.setenv("ACECODER_REWARD", "mix")
    monkeypatch.setenv("ACECODER_EXECUTOR", server.target)
    mixed = reward_func(queries, [prompt] * 2, [json.dumps(TESTS)] * 2)["rewards"].tolist()
    assert mixed == pytest.approx([0.5 * sigmoid(want[0]) + 0.5, 0.5 * sigmoid(want[1]) + 0.25],
                                  abs=1e-5)


def test_trl_async_reward_function(server) -> None:  # type: ignore[no-untyped-def]
    from acecoder.clients.trl import make_reward

    reward = make_reward(executor=server.target)
    prompts = [[{"role": "user", "content": "Write add(a, b)."}]] * 4
    completions = [[{"role": "assistant", "content": c}] for c in (GOOD, HALF, DODGE, GOOD)]
    got = asyncio.run(reward(prompts=prompts, completions=completions,
                             tests=[TESTS, TESTS, TESTS, None]))
    assert got == [1.0, 0.5, 0.0, None]  # None: no tests for that row, no reward
    plain = asyncio.run(reward(prompts=["Write add."], completions=[GOOD],
                               test_cases=[json.dumps(TESTS)]))
    assert plain == [1.0]
    gone = make_reward(executor=f"127.0.0.1:{free_port()}", deadline=2)
    assert asyncio.run(gone(prompts=["p"], completions=[GOOD], tests=[TESTS])) == [None]


@pytest.mark.slow
def test_a_real_grpo_trainer_step_with_the_trl_reward(server, tiny_policy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """TRL's own GRPOTrainer (CPU, a tiny policy) awaits the reward function among its
    reward_funcs, with the dataset's tests column, and logs its rewards."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from acecoder.clients.trl import make_reward

    inner = make_reward(executor=server.target)
    calls: list[list[float | None]] = []

    async def acecoder_reward(prompts, completions, **columns):  # type: ignore[no-untyped-def]
        got = await inner(prompts, completions, **columns)
        calls.append(got)
        return got

    rows = [{"prompt": [{"role": "user", "content": "Write add(a, b) in Python."}],
             "tests": TESTS} for _ in range(4)]
    config = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2,
                        num_generations=2, max_completion_length=8, max_steps=1,
                        learning_rate=1e-4, logging_steps=1, report_to=[], use_cpu=True,
                        save_strategy="no", bf16=False, seed=0)
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(tiny_policy)),
        processing_class=AutoTokenizer.from_pretrained(str(tiny_policy)),
        reward_funcs=[acecoder_reward], args=config, train_dataset=Dataset.from_list(rows))
    trainer.train()
    assert calls and all(len(c) == 2 for c in calls)
    assert all(v is not None and 0.0 <= v <= 1.0 for c in calls for v in c)  # scored, all
    logged = [k for h in trainer.state.log_history for k in h if "acecoder_reward" in k]
    assert logged, trainer.state.log_history


def test_openrlhf_loads_the_reward_file_and_calls_it(server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """OpenRLHF's own agent executor (--remote_rm_url FILE.py) loads the adapter by path and
    calls reward_func the way a rollout does."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    import acecoder.clients.openrlhf as adapter

    monkeypatch.setenv("ACECODER_EXECUTOR", server.target)
    executor = SingleTurnAgentExecutor(remote_rm_url=adapter.__file__)
    prompt = "<|im_start|>user\nWrite add(a, b).<|im_end|>\n<|im_start|>assistant\n"
    infos = asyncio.run(executor._fetch_rewards_via_func(
        [prompt + GOOD, prompt + HALF], [prompt, prompt], [json.dumps(TESTS)] * 2))
    assert [float(i["rewards"][0]) for i in infos] == [1.0, 0.5]
    assert [float(i["scores"][0]) for i in infos] == [1.0, 0.5]
    assert "acecoder/pass_rate" in infos[0]["extra_logs"]


def test_verl_loads_the_reward_function_from_its_config(server) -> None:  # type: ignore[no-untyped-def]
    """verl's own loader (custom_reward_function: path, name, reward_kwargs) imports the
    adapter by path and calls it the way its reward managers do."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    import acecoder.clients.verl as adapter

    for name in ("compute_score", "compute_score_batch"):
        config = OmegaConf.create({"reward": {"custom_reward_function": {
            "path": adapter.__file__, "name": name,
            "reward_kwargs": {"executor": server.target, "binary": True}}}})
        fn = get_custom_reward_fn(config)
        if name == "compute_score":
            got = [fn(data_source="acecode", solution_str=s, ground_truth=TESTS,
                      extra_info={"question": "add"}) for s in (GOOD, HALF)]
        else:
            got = fn(data_sources=["acecode"] * 2, solution_strs=[GOOD, HALF],
                     ground_truths=[TESTS, TESTS], extra_infos=[{}, {}])
        assert [g["score"] for g in got] == [1.0, 0.0]  # binary: all tests or nothing
        assert [g["pass_rate"] for g in got] == [1.0, 0.5]


def test_verl_reward_loop_awaits_the_async_compute_score(server, smol_tokenizer_dir) -> None:  # type: ignore[no-untyped-def]
    """verl's loader sees a coroutine function and wraps it to be awaited; the reward loop's
    naive manager then awaits it on its event loop (no thread per call), every sample of a
    batch at once, and reads the reward and the extra info from the dict it returns."""
    import inspect

    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    import acecoder.clients.verl as adapter

    assert inspect.iscoroutinefunction(adapter.compute_score_async)
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": adapter.__file__, "name": "compute_score_async",
        "reward_kwargs": {"executor": server.target}}}})
    fn = get_custom_reward_fn(config)
    tok = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    manager = NaiveRewardManager(config, tok, fn)
    assert manager.is_async_reward_score  # awaited, not run in an executor thread
    responses = [GOOD, HALF, DODGE, GOOD]
    data, _ = verl_batch(tok, responses, [json.dumps(TESTS), {"tests": TESTS}, TESTS, 42])

    async def all_at_once():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(manager.run_single(data[i:i + 1])
                                      for i in range(len(responses))))

    got = manager.loop.run_until_complete(all_at_once())
    assert [g["reward_score"] for g in got] == [1.0, 0.5, 0.0, 0.0]
    assert [g["reward_extra_info"]["pass_rate"] for g in got[:3]] == [1.0, 0.5, 0.0]
    assert got[2]["reward_extra_info"]["hacked"]
    bad = got[3]["reward_extra_info"]  # unreadable tests: a record, not a raise
    assert not bad["ok"] and "ground_truth" in bad["error"]


def verl_batch(tokenizer, responses: list[str], truths: list[object]):  # type: ignore[no-untyped-def]
    """A DataProto as verl's rollout hands it to a reward manager: left-padded prompts,
    right-padded responses, one attention mask over both, the dataset's non-tensor fields."""
    import numpy as np
    import torch
    from verl import DataProto

    prompts = [tokenizer(f"Write add(a, b). ({k})")["input_ids"] for k in range(len(responses))]
    answers = [tokenizer(r)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    p_len, r_len = max(map(len, prompts)), max(map(len, answers)) + 3
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(x)) + x for x in prompts])
    response_ids = torch.tensor([x + [pad] * (r_len - len(x)) for x in answers])
    mask = torch.tensor([[0] * (p_len - len(x)) + [1] * len(x) + [1] * len(y)
                         + [0] * (r_len - len(y)) for x, y in zip(prompts, answers, strict=True)])
    return DataProto.from_dict(
        tensors={"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask,
                 "input_ids": torch.cat([prompt_ids, response_ids], dim=1)},
        non_tensors={"data_source": np.array(["acecode"] * len(responses), dtype=object),
                     "reward_model": np.array([{"ground_truth": t} for t in truths],
                                              dtype=object),
                     "extra_info": np.array([{} for _ in responses], dtype=object)}), answers


def test_verl_reward_managers_score_a_rollout_batch(server, smol_tokenizer_dir) -> None:  # type: ignore[no-untyped-def]
    """verl's own batch and naive reward managers, on a batch of real token ids, with the
    adapter loaded the way verl loads it: the reward lands on each response's last token."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.batch import BatchRewardManager
    from verl.workers.reward_manager.naive import NaiveRewardManager

    import acecoder.clients.verl as adapter

    tok = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    responses = [GOOD, HALF, DODGE]
    truths = [json.dumps(TESTS), {"tests": TESTS, "setup": ""}, TESTS]

    def load(name: str):  # type: ignore[no-untyped-def]
        return get_custom_reward_fn(OmegaConf.create({"reward": {"custom_reward_function": {
            "path": adapter.__file__, "name": name,
            "reward_kwargs": {"executor": server.target}}}}))

    managers = [BatchRewardManager(tok, 0, load("compute_score_batch")),
                NaiveRewardManager(tok, 0, load("compute_score"))]
    for manager in managers:
        data, answers = verl_batch(tok, responses, truths)
        got = manager(data, return_dict=True)
        rewards, extra = got["reward_tensor"], got["reward_extra_info"]
        last = [len(a) - 1 for a in answers]
        assert [rewards[i, last[i]].item() for i in range(3)] == [1.0, 0.5, 0.0]
        assert rewards.sum().item() == 1.5  # nothing but the last tokens
        assert list(extra["pass_rate"]) == [1.0, 0.5, 0.0]
        assert extra["hacked"][2] and not extra["hacked"][0]  # sys.exit(0) is flagged


@pytest.mark.slow
def test_openrlhf_http_path_with_rule_rewards(server, tiny_acecode_rm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--remote_rm_url http://.../get_reward with rule rewards: OpenRLHF's own HTTP client
    posts {query, prompts, labels}; labels carry the tests, or a record id from
    --tests-file; a label that is neither is one failed sample, not a failed request."""
    import signal
    import sys

    from openrlhf.utils.agent import SingleTurnAgentExecutor

    from acecoder.serving import spawn_server

    records = tmp_path / "acecode.jsonl"
    records.write_text(json.dumps({"id": "q-add", "question": "Write add.",
                                   "test_cases": TESTS}) + "\n")
    init, _ = tiny_acecode_rm
    proc, m = spawn_server(
        [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0", "--http-port", "0",
         "--model", str(init), "--executor", server.target, "--gateway-reward", "rule",
         "--tests-file", str(records)],
        r"listening on (\S+) .*http on :(\d+)", "the RM server")
    try:
        assert proc.stdout is not None and "ready" in proc.stdout.readline()
        client = SingleTurnAgentExecutor(remote_rm_url=f"http://127.0.0.1:{m.group(2)}/get_reward")
        prompt = "<|im_start|>user\nWrite add(a, b).<|im_end|>\n<|im_start|>assistant\n"
        queries = [prompt + r + "<|im_end|>" for r in (GOOD, HALF, DODGE, GOOD)]
        [out] = asyncio.run(client._fetch_rewards_via_http(
            queries, [prompt] * 4, [json.dumps(TESTS), "q-add", TESTS, "no such record"]))
        assert out["rewards"] == [1.0, 0.5, 0.0, 0.0]
        assert out["scores"] == [1.0, 0.5, 0.0, 0.0]
        assert out["extra_logs"]["failed"] == [0.0, 0.0, 0.0, 1.0]
        assert out["extra_logs"]["hacked"] == [0.0, 0.0, 1.0, 0.0]
        assert "labels[3]" in out["extra_logs"]["error"][3]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
