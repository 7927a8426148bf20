"""verl's custom reward function, backed by acecoder's services.

In a verl config::

    custom_reward_function:
      path: <site-packages>/acecoder/clients/verl.py   # or a file that imports these
      name: compute_score            # one sample per call (NaiveRewardManager)
      # name: compute_score_async    # the same as a coroutine, for verl's reward loop
      # name: compute_score_batch    # the whole batch per call (BatchRewardManager)
      reward_kwargs: {executor: "executor:50051", reward: rule, binary: true}

verl passes the response alone (`solution_str`, decoded without special tokens) and the
dataset's `reward_model.ground_truth`, here the tests: a list of asserts, a JSON string of one,
or {"tests": [...], "setup": "..."}; or ground truth as verl's own code datasets carry it,
{"inputs": [...], "outputs": [...]} (stdio tests; call tests with "fn_name", as APPS/TACO
have it), as an object or a JSON string. The RM reward also needs the question: put it in
`extra_info["question"]`. Each call returns a dict: `score` plus pass rate, all-passed, RM
score, hack flags, and `ok`/`error` — a sample that could not be scored gets score 0.0 with
ok False and the reason, and never raises into the training loop. Wrong settings (an unknown
name in reward_kwargs, a missing address, an unknown reward kind) raise ValueError at the
first call, saying what to set.

verl loads the file by path, outside any package: its imports are absolute.

Settings come from reward_kwargs, by the names every adapter takes (`clients.rewards.SETTINGS`:
reward, executor, rm, binary, rm_weight, deadline, test_timeout, concurrency, per_call,
wait_ready), or from the ACECODER_* environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acecoder.clients.rewards import (
    RewardSpec,
    score_labeled,
    score_labeled_async,
    shared,
    spec_from_settings,
)

VERL_KWARGS = ("reward_router_address", "reward_model_tokenizer")
"""What verl's reward loop passes beside reward_kwargs when it runs a reward model of its
own: not ours to read, and no mistake."""


def _spec(kwargs: dict[str, Any]) -> RewardSpec:
    """The settings of reward_kwargs (`clients.rewards.SETTINGS`) over the ACECODER_*
    environment; ValueError, saying what to set, when they are wrong."""
    return spec_from_settings(kwargs, ignore=VERL_KWARGS)


def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                  extra_info: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """One sample (verl's default reward manager calls this per response)."""
    return compute_score_batch(data_sources=[data_source], solution_strs=[solution_str],
                               ground_truths=[ground_truth], extra_infos=[extra_info],
                               **kwargs)[0]


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str],
                        ground_truths: Sequence[Any],
                        extra_infos: Sequence[dict[str, Any] | None] | None = None,
                        **kwargs: Any) -> list[dict[str, Any]]:
    """A batch (verl's batch reward manager): one dict per response, in order."""
    scorer = shared(_spec(kwargs))  # wrong settings raise: a configuration error, at once
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    rows = [(_question(info), str(response), truth)
            for response, truth, info in zip(solution_strs, ground_truths, infos, strict=True)]
    return [r.record() for r in score_labeled(scorer, rows, "ground_truth")]


async def compute_score_async(data_source: str, solution_str: str, ground_truth: Any,
                              extra_info: dict[str, Any] | None = None,
                              **kwargs: Any) -> dict[str, Any]:
    """`compute_score` as a coroutine, for verl's reward loop (which awaits async reward
    functions on its event loop instead of giving each call a thread): the sample's reward is
    awaited without blocking that loop, so all of a batch's samples are in flight at once."""
    scorer = shared(_spec(kwargs))  # wrong settings raise: a configuration error, at once
    [reward] = await score_labeled_async(
        scorer, [(_question(extra_info), str(solution_str), ground_truth)], "ground_truth")
    return reward.record()


def _question(info: dict[str, Any] | None) -> str:
    """The question of a sample, for the RM: extra_info's "question" (or "prompt")."""
    return str((info or {}).get("question") or (info or {}).get("prompt") or "")
