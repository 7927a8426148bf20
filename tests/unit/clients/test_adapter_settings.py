"""The reward adapters fail loudly on configuration and quietly, but logged, per sample: the
same argument names for TRL, verl and OpenRLHF, a ValueError that says what to set for a
missing address, an unknown kind, an unknown argument or a dataset without tests."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from acecoder.clients import openrlhf, trl, verl
from acecoder.clients.rewards import SETTINGS, spec_from_settings

TESTS = ["assert add(1, 2) == 3"]
GOOD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ACECODER_") and name != "ACECODER_CACHE":
            monkeypatch.delenv(name)


def nowhere() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def trl_with(**settings: Any) -> Any:
    return trl.make_reward(**settings)


def verl_with(**settings: Any) -> Any:
    return verl.compute_score("acecode", GOOD, TESTS, {"question": "add"}, **settings)


def openrlhf_with(**settings: Any) -> Any:
    return openrlhf.make_reward_func(**settings)


ADAPTERS: list[Any] = [pytest.param(trl_with, id="trl"), pytest.param(verl_with, id="verl"),
                       pytest.param(openrlhf_with, id="openrlhf")]


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(("settings", "says"), [
    pytest.param({}, r"needs an executor: set executor= \(ACECODER_EXECUTOR\)", id="no-executor"),
    pytest.param({"reward": "mix", "executor": "x:1"}, r"needs an RM server: set rm= "
                 r"\(ACECODER_RM\)", id="no-rm"),
    pytest.param({"reward": "vibes", "executor": "x:1"}, r"one of rule, rm, mix, got 'vibes': "
                 r"set reward= \(ACECODER_REWARD\)", id="unknown-kind"),
    pytest.param({"executer": "x:1"}, r"unknown acecoder reward setting\(s\) executer: the "
                 r"settings are reward, executor, rm", id="unknown-name"),
    pytest.param({"kind": "rm", "reward": "rule", "executor": "x:1"},
                 r"kind='rm' and reward='rule' name one setting", id="alias-and-name"),
    pytest.param({"executor": "x:1", "rm_weight": 2.0}, r"rm_weight must be in \[0, 1\], "
                 r"got 2.0", id="bad-weight"),
])
def test_every_adapter_refuses_wrong_settings_the_same_way(
        adapter: Callable[..., Any], settings: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        adapter(**settings)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_adapter_takes_the_same_names(adapter: Callable[..., Any]) -> None:
    """Each name of SETTINGS (and the old `kind`) is an argument of every adapter: given a
    right value, nothing is refused (verl, which scores at once, gets an executor that is
    not there and says so in its record)."""
    values = {"reward": "mix", "executor": nowhere(), "rm": nowhere(), "binary": True,
              "rm_weight": 0.25, "deadline": 0.5, "test_timeout": 1.0, "concurrency": 4,
              "per_call": 2, "wait_ready": False}
    assert set(values) == set(SETTINGS)
    got = adapter(**values)
    if isinstance(got, dict):  # verl's record: scored, and failed for want of an executor
        assert not got["ok"] and "executor" in got["error"]
    spec = spec_from_settings(values)
    assert (spec.kind, spec.binary, spec.rm_weight, spec.per_call, spec.wait_ready) == (
        "mix", True, 0.25, 2, False)
    assert spec_from_settings({"kind": "rule", "executor": "x:1"}).kind == "rule"  # old name


def test_the_environment_gives_what_arguments_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACECODER_EXECUTOR", "env:1")
    monkeypatch.setenv("ACECODER_WAIT_READY", "0")
    spec = spec_from_settings({"binary": True})
    assert (spec.executor, spec.binary, spec.wait_ready) == ("env:1", True, False)
    assert spec_from_settings({"executor": "arg:2"}).executor == "arg:2"  # arguments win
    monkeypatch.setenv("ACECODER_WAIT_READY", "maybe")
    with pytest.raises(ValueError, match="ACECODER_WAIT_READY must be 1 or 0, got 'maybe'"):
        spec_from_settings({})


def test_verl_leaves_what_verl_itself_passes_alone() -> None:
    got = verl.compute_score("acecode", GOOD, TESTS, {}, executor=nowhere(), deadline=0.5,
                             reward_router_address=None, reward_model_tokenizer=None)
    assert not got["ok"] and "executor" in got["error"]


def test_the_trl_default_function_reads_the_environment_at_its_first_call() -> None:
    with pytest.raises(ValueError, match="ACECODER_EXECUTOR"):
        asyncio.run(trl.acecoder_reward(prompts=["p"], completions=[GOOD], tests=[TESTS]))


def test_openrlhfs_file_function_raises_on_wrong_settings() -> None:
    with pytest.raises(ValueError, match="ACECODER_EXECUTOR"):
        openrlhf.reward_func(["p" + GOOD], ["p"], [TESTS])


def test_trl_without_a_tests_column_raises_at_the_first_call() -> None:
    reward = trl.make_reward(executor=nowhere())
    with pytest.raises(ValueError, match="no tests column.*'tests'.*answer, solution"):
        asyncio.run(reward(prompts=["p"], completions=[GOOD], answer=["3"], solution=[GOOD]))


def test_trl_logs_each_completion_without_a_reward_and_why(
        caplog: pytest.LogCaptureFixture) -> None:
    reward = trl.make_reward(executor=nowhere(), deadline=0.5)
    with caplog.at_level(logging.WARNING, logger="acecoder.clients.trl"):
        got = asyncio.run(reward(prompts=["p", "p"], completions=[GOOD, GOOD],
                                 tests=[TESTS, 42]))
    assert got == [None, None]
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("acecoder reward: completion 0 of 2 got no reward: executor:")
               for m in lines), lines
    assert any(m.startswith("acecoder reward: completion 1 of 2 got no reward: tests:")
               for m in lines), lines
