"""OpenRLHF's reward-function file, backed by acecoder's services.

    --reward.remote_url <site-packages>/acecoder/clients/openrlhf.py --data.label_key tests

(the current spelling; older OpenRLHF releases call these --remote_rm_url and --label_key).

OpenRLHF imports the file and calls `reward_func(queries, prompts, labels)`: each query is the
policy's prompt followed by its response, `prompts` the prompts alone, `labels` the dataset
column named by --data.label_key (here the tests: a list of asserts, a JSON string of one, or
{"tests": [...], "setup": "..."}, or {"inputs", "outputs"} ground truth, with "fn_name" for
call tests). It reads `rewards` (for advantages), `scores` (0-1, for
dynamic filtering) and `extra_logs` (logged). A sample that could not be scored gets reward
0.0 and is counted in extra_logs["acecoder/failed"]; nothing raises into the training loop.

OpenRLHF loads the file by path, outside any package: its imports are absolute.

Settings: the ACECODER_* environment, e.g. ACECODER_EXECUTOR and ACECODER_BINARY=1 for
AceCoder's reward (OpenRLHF passes no arguments to the file's function); or a reward file of
your own, `reward_func = make_reward_func(executor="HOST:PORT", binary=True)`, by the names
every adapter takes (`clients.rewards.SETTINGS`). Wrong settings raise ValueError at the first
call, saying what to set. For the HTTP path (--reward.remote_url, formerly --remote_rm_url,
http://HOST:PORT/get_reward), `acecoder serve rm` has the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from acecoder.clients.rewards import Reward, score_labeled, shared, spec_from_settings


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
    """One Reward per query (value None, with the reason, when there is none); ValueError,
    saying what to set, when the settings are wrong."""
    scorer = shared(spec_from_settings(settings))
    rows = [(*question_and_response(query, prompt), label)
            for query, prompt, label in zip(queries, prompts, labels, strict=True)]
    return score_labeled(scorer, rows, "label")


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any],
                **settings: Any) -> dict[str, Any]:
    """OpenRLHF's reward function: settings from the ACECODER_* environment (and `settings`,
    by the names every adapter takes)."""
    import torch

    rewards = score(queries, prompts, labels, **settings)
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


def make_reward_func(**settings: Any) -> Callable[..., dict[str, Any]]:
    """`reward_func` with these settings over the environment, for a reward file of your own;
    ValueError, saying what to set, when they are wrong."""
    spec_from_settings(settings)  # checked now, not at the first rollout

    def acecoder_reward_func(queries: Sequence[str], prompts: Sequence[str],
                             labels: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
        return reward_func(queries, prompts, labels, **settings)

    return acecoder_reward_func
