"""OpenRLHF's reward-function file, backed by acecoder's services.

    --remote_rm_url <site-packages>/acecoder/clients/openrlhf.py --label_key tests

OpenRLHF imports the file and calls `reward_func(queries, prompts, labels)`: each query is the
policy's prompt followed by its response, `prompts` the prompts alone, `labels` the dataset
column named by --label_key (here the tests: a list of asserts, a JSON string of one, or
{"tests": [...], "setup": "..."}, or {"inputs", "outputs"} ground truth, with "fn_name" for
call tests). It reads `rewards` (for advantages), `scores` (0-1, for
dynamic filtering) and `extra_logs` (logged). A sample that could not be scored gets reward
0.0 and is counted in extra_logs["acecoder/failed"]; nothing raises into the training loop.

OpenRLHF loads the file by path, outside any package: its imports are absolute.

Settings: the ACECODER_* environment (see `clients.rewards`), e.g. ACECODER_EXECUTOR and
ACECODER_BINARY=1 for AceCoder's reward. For the HTTP path (--remote_rm_url http://...),
`acecoder serve rm` has the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acecoder.clients.rewards import Reward, score_labeled, shared, spec_from_env


def response_of(query: str, prompt: str) -> str:
    """The response part of an OpenRLHF query (prompt + response)."""
    return query[len(prompt):] if query.startswith(prompt) else query


def question_and_response(query: str, prompt: str) -> tuple[str, str]:
    """(question, response) of a chat-templated query: the last user turn and the answer,
    without the policy's chat markers (ChatML or Llama-3), as the RM wants them; the prompt
    and the rest of the query when neither template matches."""
    from acecoder.models.templates import split_query

    try:
        return split_query(query, prompt)
    except ValueError:
        return prompt, response_of(query, prompt)


def score(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any],
          **settings: Any) -> list[Reward]:
    """One Reward per query (value None, with the reason, when there is none)."""
    try:
        scorer = shared(spec_from_env(**settings))
    except ValueError as exc:
        return [Reward(None, error=f"acecoder settings: {exc}") for _ in queries]
    rows = [(*question_and_response(query, prompt), label)
            for query, prompt, label in zip(queries, prompts, labels, strict=True)]
    return score_labeled(scorer, rows, "label")


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any],
                **kwargs: Any) -> dict[str, Any]:
    import torch

    rewards = score(queries, prompts, labels)
    values = [0.0 if r.value is None else float(r.value) for r in rewards]
    rates = [r.pass_rate for r in rewards if r.pass_rate is not None]
    return {
        "rewards": torch.tensor(values),
        "scores": torch.tensor([min(1.0, max(0.0, v)) for v in values]),
        "extra_logs": {
            "acecoder/pass_rate": torch.tensor(sum(rates) / len(rates) if rates else 0.0),
            "acecoder/failed": torch.tensor(float(sum(r.value is None for r in rewards))),
            "acecoder/hacked": torch.tensor(float(sum(r.hacked for r in rewards))),
        },
    }
