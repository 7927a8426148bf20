"""verl's custom reward function, backed by acecoder's services.

In a verl config::

    custom_reward_function:
      path: <site-packages>/acecoder/clients/verl.py   # or a file that imports these
      name: compute_score            # one sample per call (NaiveRewardManager)
      # name: compute_score_batch    # the whole batch per call (BatchRewardManager)
      reward_kwargs: {executor: "executor:50051", reward: rule, binary: true}

verl passes the response alone (`solution_str`, decoded without special tokens) and the
dataset's `reward_model.ground_truth`, here the tests: a list of asserts, a JSON string of one,
or {"tests": [...], "setup": "..."}; or ground truth as verl's own code datasets carry it,
{"inputs": [...], "outputs": [...]} (stdio tests; call tests with "fn_name", as APPS/TACO
have it), as an object or a JSON string. The RM reward also needs the question: put it in
`extra_info["question"]`. Each call returns a dict: `score` plus pass rate, all-passed, RM
score, hack flags, and `ok`/`error` — a sample that could not be scored gets score 0.0 with
ok False and the reason, and never raises into the training loop.

verl loads the file by path, outside any package: its imports are absolute.

Settings come from reward_kwargs (executor, rm, reward, binary, rm_weight, deadline,
test_timeout, concurrency) or from the ACECODER_* environment (see `clients.rewards`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acecoder.clients.rewards import Reward, score_labeled, shared, spec_from_env

_SETTINGS = {"executor": "executor", "rm": "rm", "reward": "kind", "binary": "binary",
             "rm_weight": "rm_weight", "deadline": "deadline", "test_timeout": "test_timeout",
             "concurrency": "concurrency"}


def _spec(kwargs: dict[str, Any]) -> Any:
    return spec_from_env(**{_SETTINGS[k]: v for k, v in kwargs.items() if k in _SETTINGS})


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
    try:
        scorer = shared(_spec(kwargs))
    except ValueError as exc:  # bad settings: every sample says so, the job goes on
        return [Reward(None, error=f"acecoder settings: {exc}").record() for _ in solution_strs]
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    rows = [(str((info or {}).get("question") or (info or {}).get("prompt") or ""),
             str(response), truth)
            for response, truth, info in zip(solution_strs, ground_truths, infos, strict=True)]
    return [r.record() for r in score_labeled(scorer, rows, "ground_truth")]
