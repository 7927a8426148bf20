"""Rewards over the network, for our RL trainer and the adapters of other people's
(`acecoder.clients.verl`, `.openrlhf`, `.trl`).

`rule`: the executor runs the program extracted from the response on the question's tests:
the pass rate, or (`binary`) 1.0 only when every test passes (AceCoder's RL reward). `rm`: the
RM server's raw score. `mix`: rm_weight * p + (1 - rm_weight) * rule, in [0, 1], where p is the
RM server's calibrated probability that the program is correct (sigmoid(scale * raw + shift)
under the served model's calibration; sigmoid(raw) for a model that has none): the raw score
is an uncentred logit, so only a calibrated one weighs against a pass rate as meant.

Calls run on an event loop of their own (a background thread), so that a trainer submits a
batch and goes on generating while it is scored (`submit` returns a future). A batch goes out
as calls of at most `per_call` samples, several at once, so that a target naming many
replicas (`dns:///...`, `ipv4:a,b,c`) shares them out. Every call has a deadline and transient
failures are retried by the clients; a sample whose reward could not be had comes back with
`value=None` and the reason, to be dropped and counted, never scored 0.

The adapters take the same settings by the same names (`SETTINGS`: TRL's `make_reward`,
verl's `reward_kwargs`, OpenRLHF's `make_reward_func`), each also an environment variable for
processes that only hand us samples (a reward file a trainer imports): ACECODER_REWARD
(rule|rm|mix), ACECODER_EXECUTOR, ACECODER_RM (gRPC targets), ACECODER_BINARY (1|0),
ACECODER_RM_WEIGHT, ACECODER_DEADLINE, ACECODER_TEST_TIMEOUT, ACECODER_CONCURRENCY,
ACECODER_PER_CALL, ACECODER_WAIT_READY (1|0). `spec_from_settings` checks them (an unknown
name, a missing address or an unknown kind is a ValueError saying what to set);
`shared(spec)` is one scorer per setting per process.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import math
import os
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acecoder.codeblocks import extract_program

KINDS = ("rule", "rm", "mix")


@dataclass(frozen=True, kw_only=True)
class RewardSpec:
    kind: str = "rule"
    """rule (executor), rm (reward model) or mix."""
    binary: bool = False
    """rule: 1.0 only when all tests pass, else 0.0 (instead of the pass rate)."""
    rm_weight: float = 0.5
    """mix: weight of the RM's calibrated probability (the rule reward gets the rest)."""
    executor: str | None = None
    """gRPC target of `acecoder serve executor` (rule, mix): HOST:PORT, or many replicas
    (`dns:///NAME:PORT`, `ipv4:HOST:PORT,HOST:PORT`)."""
    rm: str | None = None
    """gRPC target of `acecoder serve rm` (rm, mix), the same way."""
    deadline: float = 120.0
    """Seconds for one call, retries included."""
    test_timeout: float | None = None
    """Per-test time limit (the executor's default when None)."""
    concurrency: int = 64
    """Samples scored at once per scorer (the rest wait their turn, client side)."""
    per_call: int = 8
    """Samples per call (at most `concurrency`): one call goes to one replica, so smaller
    calls, more of them at once, share a batch out over more replicas."""
    wait_ready: bool = True
    """Calls wait, each within `deadline`, for a server still starting or loading its model,
    instead of failing at once while no replica serves."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"reward kind must be one of {', '.join(KINDS)}, got "
                             f"{self.kind!r}: set reward= (ACECODER_REWARD)")
        if self.kind in ("rule", "mix") and not self.executor:
            raise ValueError(f"a {self.kind} reward needs an executor: set executor= "
                             "(ACECODER_EXECUTOR) to the HOST:PORT of `acecoder serve executor`")
        if self.kind in ("rm", "mix") and not self.rm:
            raise ValueError(f"a {self.kind} reward needs an RM server: set rm= (ACECODER_RM) "
                             "to the HOST:PORT of `acecoder serve rm`")
        if not 0.0 <= self.rm_weight <= 1.0:
            raise ValueError(f"rm_weight must be in [0, 1], got {self.rm_weight}")
        if self.deadline <= 0:
            raise ValueError(f"deadline must be > 0, got {self.deadline}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.per_call < 1:
            raise ValueError(f"per_call must be >= 1, got {self.per_call}")


@dataclass(frozen=True)
class Sample:
    question: str
    response: str
    tests: tuple[Any, ...] = ()
    """Test statements, stdio tests (StdioTest) or, with `fn_name`, call tests (CallTest)."""
    setup: str = ""
    fn_name: str = ""
    """Call tests: the function they call (or the method of the program's class Solution)."""


@dataclass(frozen=True)
class Reward:
    value: float | None
    """The reward; None when it could not be had (`error` says why)."""
    pass_rate: float | None = None
    all_passed: bool | None = None
    rm_score: float | None = None
    """The RM's raw score."""
    flags: tuple[str, ...] = ()
    """What the executor saw the program try (EXITED_EARLY, FORGED_OUTPUT,
    OVERRIDDEN_EQUALITY): reward hacks, defeated, counted by the trainer."""
    error: str | None = None

    @property
    def hacked(self) -> bool:
        return bool(self.flags)

    def record(self) -> dict[str, Any]:
        """The per-sample record the adapters hand to a trainer's logs: every key always
        present with one type (frameworks stack them into arrays). `score` is the value, or
        0.0 when there is none, and then `ok` is False and `error` says why."""
        return {"score": 0.0 if self.value is None else float(self.value),
                "ok": self.value is not None,
                "pass_rate": -1.0 if self.pass_rate is None else float(self.pass_rate),
                "all_passed": bool(self.all_passed),
                "rm_score": float("nan") if self.rm_score is None else float(self.rm_score),
                "hacked": self.hacked, "flags": ",".join(self.flags),
                "error": self.error or ""}


def _why(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = details() if callable(details) else None
    return str(text or exc or type(exc).__name__)


class RewardScorer:
    """`submit(samples)` -> a future of one Reward per sample; `close()` when done."""

    def __init__(self, spec: RewardSpec) -> None:
        self.spec = spec
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rewards",
                                        daemon=True)
        self._thread.start()
        self._executor: Any = None
        self._rm: Any = None
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=30)

    async def _open(self) -> None:
        from acecoder.clients import AsyncExecutorClient, AsyncRewardClient

        wait = self.spec.wait_ready
        if self.spec.executor:
            self._executor = AsyncExecutorClient(self.spec.executor, timeout=self.spec.deadline,
                                                 wait_ready=wait)
        if self.spec.rm:
            self._rm = AsyncRewardClient(self.spec.rm, timeout=self.spec.deadline,
                                         wait_ready=wait)

    def submit(self, samples: Sequence[Sample]) -> concurrent.futures.Future[list[Reward]]:
        return asyncio.run_coroutine_threadsafe(self.score(list(samples)), self._loop)

    def score_now(self, samples: Sequence[Sample]) -> list[Reward]:
        """Blocking `submit`: one Reward per sample, whatever happens (a failure of the whole
        call gives every sample value=None with the reason)."""
        try:
            return self.submit(samples).result(timeout=self.spec.deadline * 2 + 30)
        except Exception as exc:
            why = f"scoring failed: {_why(exc)}"
            return [Reward(None, error=why) for _ in samples]

    async def score(self, samples: list[Sample]) -> list[Reward]:
        """Calls of `per_call` samples, as many at once as keep `concurrency` samples in
        flight; the rewards in the samples' order."""
        step = min(self.spec.per_call, self.spec.concurrency)
        gate = asyncio.Semaphore(max(1, self.spec.concurrency // step))

        async def one(part: list[Sample]) -> list[Reward]:
            async with gate:
                return await self._score(part)

        parts = await asyncio.gather(*(one(samples[k:k + step])
                                       for k in range(0, len(samples), step)))
        return [reward for part in parts for reward in part]

    async def _score(self, samples: list[Sample]) -> list[Reward]:
        spec = self.spec
        rule_task = rm_task = None
        if spec.kind in ("rule", "mix"):
            rule_task = asyncio.ensure_future(self._rule(samples))
        if spec.kind in ("rm", "mix"):
            rm_task = asyncio.ensure_future(self._rm_scores(samples))
        rules = await rule_task if rule_task else [None] * len(samples)
        scores = await rm_task if rm_task else [None] * len(samples)
        out = []
        for rule, score in zip(rules, scores, strict=True):
            out.append(self._combine(rule, score))
        return out

    def _combine(self, rule: Any, score: Any) -> Reward:
        spec = self.spec
        probability = None
        if isinstance(score, tuple):
            score, probability = score
        return combine(spec.kind, rule, score, binary=spec.binary, rm_weight=spec.rm_weight,
                       probability=probability)

    async def _rule(self, samples: list[Sample]) -> list[Any]:
        return await rule_results(self._executor, samples, deadline=self.spec.deadline,
                                  test_timeout=self.spec.test_timeout)

    async def _rm_scores(self, samples: list[Sample]) -> list[Any]:
        try:
            scores = await self._rm.score([(s.question, s.response) for s in samples],
                                          deadline=self.spec.deadline)
        except Exception as exc:
            return [f"rm: {_why(exc)}"] * len(samples)
        return [(s.score, s.probability) for s in scores]

    def close(self) -> None:
        async def shut() -> None:
            for c in (self._executor, self._rm):
                if c is not None:
                    await c.close()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def combine(kind: str, rule: Any, score: Any, *, binary: bool = False,
            rm_weight: float = 0.5, probability: float | None = None) -> Reward:
    """One sample's Reward from its rule result ((pass rate, all passed, flags), None when
    not asked for, or an error string) and its RM score (float, None, or an error string).
    `mix` weighs `probability`, the RM's calibrated p(correct) (sigmoid(score) when None)."""
    error = next((x for x in (rule, score) if isinstance(x, str)), None)
    if error is not None:
        return Reward(None, error=error)
    pass_rate = all_passed = None
    flags: tuple[str, ...] = ()
    rule_value = 0.0
    if rule is not None:
        pass_rate, all_passed, flags = rule
        rule_value = (1.0 if all_passed else 0.0) if binary else pass_rate
    if kind == "rule":
        value = rule_value
    elif kind == "rm":
        value = score
    else:
        p = sigmoid(score) if probability is None else probability
        value = rm_weight * p + (1 - rm_weight) * rule_value
    return Reward(value, pass_rate, all_passed, score, flags)


def sigmoid(x: float) -> float:
    """The RM score as a probability-like value in (0, 1) (stable for any size)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


async def rule_results(executor: Any, samples: Sequence[Sample], *, deadline: float,
                       test_timeout: float | None = None) -> list[Any]:
    """(pass rate, all passed, flags) per sample from an AsyncExecutorClient, or a string
    saying why there is none (no tests; the executor failed or was too slow)."""
    from acecoder.clients import Program

    programs = [Program(extract_program(s.response), list(s.tests), setup=s.setup,
                        timeout=test_timeout, fn_name=s.fn_name) for s in samples]
    pending = "no verdict from the executor"
    results: list[Any] = [pending if s.tests else "the sample has no tests" for s in samples]
    runnable = [i for i, s in enumerate(samples) if s.tests]
    if not runnable:
        return results
    def verdict(r: Any) -> tuple[float, bool, tuple[str, ...]]:
        flags = set(r.flags)
        if r.status.value == "EXITED_EARLY":  # an executor from before flags
            flags.add("EXITED_EARLY")
        return r.pass_rate, r.all_passed, tuple(sorted(flags))

    started = time.monotonic()
    try:
        async for r in executor.execute_batch([programs[i] for i in runnable],
                                              deadline=deadline):
            results[runnable[r.index]] = verdict(r)
    except Exception as exc:  # the executor is gone or too slow: no reward, not 0
        left = [i for i in runnable if results[i] == pending]
        if _code(exc) == "INVALID_ARGUMENT" and len(left) > 1:
            # The executor refuses a whole batch for one bad program (no tests, too many,
            # too large): run each alone, so that the bad one fails alone.
            remaining = max(1.0, deadline - (time.monotonic() - started))

            async def alone(i: int) -> None:
                p = programs[i]
                try:
                    results[i] = verdict(await executor.execute(
                        p.program, p.tests, setup=p.setup, timeout=p.timeout,
                        fn_name=p.fn_name, deadline=remaining))
                except Exception as one_exc:
                    results[i] = f"executor: {_why(one_exc)}"

            await asyncio.gather(*(alone(i) for i in left))
        else:
            reason = f"executor: {_why(exc)}"
            results = [reason if r == pending else r for r in results]
    return results


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    value = code() if callable(code) else code
    return getattr(value, "name", None)


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0, got {value!r}")


def spec_from_env(**overrides: Any) -> RewardSpec:
    """RewardSpec from ACECODER_* variables; `overrides` (None ignored) win."""
    env = os.environ

    def number(name: str, kind: type, default: Any) -> Any:
        raw = env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None

    values: dict[str, Any] = {
        "kind": env.get("ACECODER_REWARD", "rule"),
        "binary": _flag("ACECODER_BINARY", False),
        "rm_weight": number("ACECODER_RM_WEIGHT", float, 0.5),
        "executor": env.get("ACECODER_EXECUTOR") or None,
        "rm": env.get("ACECODER_RM") or None,
        "deadline": number("ACECODER_DEADLINE", float, 120.0),
        "test_timeout": number("ACECODER_TEST_TIMEOUT", float, None),
        "concurrency": number("ACECODER_CONCURRENCY", int, 64),
        "per_call": number("ACECODER_PER_CALL", int, 8),
        "wait_ready": _flag("ACECODER_WAIT_READY", True),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RewardSpec(**values)


SETTINGS = ("reward", "executor", "rm", "binary", "rm_weight", "deadline", "test_timeout",
            "concurrency", "per_call", "wait_ready")
"""The argument names every adapter takes, each also the variable ACECODER_<NAME>: reward
(rule|rm|mix: RewardSpec.kind), then RewardSpec's fields of the same names."""
ALIASES = {"kind": "reward"}
"""Older argument names, still accepted (`make_reward(kind=...)`)."""


def spec_from_settings(settings: Mapping[str, Any], *,
                       ignore: Collection[str] = ()) -> RewardSpec:
    """The RewardSpec of an adapter's arguments (`SETTINGS`, or an alias) over the ACECODER_*
    environment. ValueError, saying what to set, for an argument of another name (`ignore`:
    those the trainer passes that are not ours), a missing address or an unknown kind."""
    values: dict[str, Any] = {}
    given: dict[str, str] = {}  # setting -> the name it came by
    unknown = []
    for name, value in settings.items():
        if name in ignore:
            continue
        key = ALIASES.get(name, name)
        if key not in SETTINGS:
            unknown.append(name)
        elif key in values and values[key] != value:
            first = given[key]
            raise ValueError(f"acecoder reward settings: {first}={values[key]!r} and "
                             f"{name}={value!r} name one setting: pass {key}= alone")
        else:
            values[key], given[key] = value, name
    if unknown:
        raise ValueError(f"unknown acecoder reward setting(s) {', '.join(sorted(unknown))}: "
                         f"the settings are {', '.join(SETTINGS)}")
    values["kind"] = values.pop("reward", None)
    return spec_from_env(**values)


_shared: dict[RewardSpec, RewardScorer] = {}
_shared_lock = threading.Lock()


def shared(spec: RewardSpec) -> RewardScorer:
    """One scorer (channels, event loop) per setting per process, closed at exit."""
    with _shared_lock:
        scorer = _shared.get(spec)
        if scorer is None:
            scorer = _shared[spec] = RewardScorer(spec)
        return scorer


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        scorers = list(_shared.values())
        _shared.clear()
    for scorer in scorers:
        try:
            scorer.close()
        except Exception:  # the interpreter is going away; nothing to report to
            pass


def parse_tests(raw: Any) -> tuple[tuple[Any, ...], str, str]:
    """(tests, setup, fn_name) from what trainers carry as a label: a list of asserts, a JSON
    string of one, or an object {"tests"|"test_cases": [...], "setup"|"imports": ...}; or
    ground truth as verl, SandboxFusion, DeepCoder, APPS and TACO data carry it:
    {"inputs": [...], "outputs": [...]} (stdio tests), with "fn_name" call tests, or a list of
    {"input", "output"} tests ({"tests": [...], "fn_name": "f"} for call tests)."""
    import json

    from acecoder.executor.types import CallTests, parse_ground_truth

    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith(("[", "{")):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("tests: not valid JSON") from None
        else:
            raw = [line for line in text.splitlines() if line.strip()]
    setup = ""
    fn_name = ""
    if isinstance(raw, dict) and "inputs" in raw:  # ground truth
        raw = _listed(raw)
    elif isinstance(raw, dict):
        setup = raw.get("setup") or raw.get("imports") or ""
        if isinstance(setup, list):
            setup = "\n".join(str(x) for x in setup)
        fn_name = raw.get("fn_name") or ""
        raw = raw.get("tests", raw.get("test_cases"))
    raw = _listed(raw)
    if isinstance(raw, (list, tuple)) and all(isinstance(t, str) for t in raw):
        if fn_name:
            raise ValueError("tests with \"fn_name\" must be call tests "
                             "({\"input\": [args...], \"output\": value})")
        return tuple(raw), str(setup), ""
    if not isinstance(raw, (list, dict, str)):  # a string: ground truth's JSON
        raise ValueError("tests must be a list of strings (asserts), of {\"input\", "
                         "\"output\"} tests, or {\"inputs\", \"outputs\"} ground truth")
    tests = parse_ground_truth(raw, fn_name)
    if isinstance(tests, CallTests):
        return tests.tests, str(setup), tests.fn_name
    return tuple(tests), str(setup), ""


def _listed(raw: Any) -> Any:
    """numpy arrays (as parquet datasets hand them over) as lists, also inside ground truth."""
    if hasattr(raw, "tolist"):
        return raw.tolist()
    if isinstance(raw, dict):
        return {k: _listed(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_listed(v) for v in raw]
    return raw


def score_labeled(scorer: RewardScorer, rows: Sequence[tuple[str, str, Any]],
                  what: str = "label") -> list[Reward]:
    """(question, response, tests as a trainer carries them) rows -> one Reward each,
    blocking. A row whose tests cannot be read gets value None and says why (`what` names
    the field in the message)."""
    samples, problems = _labeled(rows, what)
    scored = iter(scorer.score_now([s for s in samples if s is not None]))
    return [next(scored) if s is not None else Reward(None, error=problems[i])
            for i, s in enumerate(samples)]


async def score_labeled_async(scorer: RewardScorer, rows: Sequence[tuple[str, str, Any]],
                              what: str = "label") -> list[Reward]:
    """`score_labeled` for a caller in an event loop of its own (verl's reward loop): awaits
    the scorer's loop without blocking the caller's, and never raises for a sample."""
    samples, problems = _labeled(rows, what)
    todo = [s for s in samples if s is not None]
    try:
        got = await asyncio.wait_for(asyncio.wrap_future(scorer.submit(todo)),
                                     scorer.spec.deadline * 2 + 30)
    except Exception as exc:
        got = [Reward(None, error=f"scoring failed: {_why(exc)}") for _ in todo]
    scored = iter(got)
    return [next(scored) if s is not None else Reward(None, error=problems[i])
            for i, s in enumerate(samples)]


def _labeled(rows: Sequence[tuple[str, str, Any]],
             what: str) -> tuple[list[Sample | None], dict[int, str]]:
    """A Sample per row (None where its tests cannot be read) and, by row, why not."""
    samples: list[Sample | None] = []
    problems: dict[int, str] = {}
    for i, (question, response, label) in enumerate(rows):
        try:
            tests, setup, fn_name = parse_tests(label)
        except ValueError as exc:
            problems[i] = f"{what}: {exc}"
            samples.append(None)
            continue
        samples.append(Sample(question, response, tests, setup, fn_name))
    return samples, problems
