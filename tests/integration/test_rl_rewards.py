"""The RL trainer's rewards over the network: real executor and RM servers on loopback;
an unreachable service gives no reward (None, with the reason), never 0."""

from __future__ import annotations


import pytest

from acecoder.clients.rewards import RewardScorer, RewardSpec, Sample, sigmoid

TESTS = ("assert add(1, 2) == 3", "assert add(0, 0) == 0")
GOOD = "Here:\n```python\ndef add(a, b):\n    return a + b\n```"
HALF = "def add(a, b):\n    return a * b\n"  # 0 * 0 == 0 passes, 1 * 2 == 3 fails
DODGE = "import sys\nsys.exit(0)\n"


def samples() -> list[Sample]:
    return [Sample("Write add(a, b).", r, TESTS) for r in (GOOD, HALF, DODGE)] + [
        Sample("Write add(a, b).", GOOD, ())]


def test_rule_rewards_pass_rate_and_binary(server) -> None:  # type: ignore[no-untyped-def]
    for binary, want in ((False, [1.0, 0.5, 0.0]), (True, [1.0, 0.0, 0.0])):
        client = RewardScorer(RewardSpec(kind="rule", binary=binary, executor=server.target))
        try:
            got = client.submit(samples()).result(timeout=120)  # a future: scoring overlaps
        finally:
            client.close()
        assert [r.value for r in got[:3]] == want
        assert [r.pass_rate for r in got[:3]] == [1.0, 0.5, 0.0]
        assert [r.hacked for r in got[:3]] == [False, False, True]  # exited to dodge its tests
        assert got[2].flags == ("EXITED_EARLY",)
        assert got[3].value is None and got[3].error == "the sample has no tests"


def test_rm_and_mixed_rewards(server, rm_target: str) -> None:  # type: ignore[no-untyped-def]
    rm = RewardScorer(RewardSpec(kind="rm", rm=rm_target))
    mix = RewardScorer(RewardSpec(kind="mix", rm=rm_target, executor=server.target,
                                  rm_weight=0.25))
    try:
        by_rm = rm.submit(samples()[:3]).result(timeout=120)
        mixed = mix.submit(samples()[:3]).result(timeout=120)
    finally:
        rm.close()
        mix.close()
    assert all(r.value == r.rm_score and r.pass_rate is None for r in by_rm)
    assert len({r.value for r in by_rm}) == 3  # three different programs, three scores
    for m, r in zip(mixed, by_rm, strict=True):
        assert m.value == pytest.approx(0.25 * sigmoid(r.rm_score) + 0.75 * m.pass_rate,
                                       rel=1e-6)
        assert 0.0 <= m.value <= 1.0


def test_an_unreachable_service_gives_no_reward() -> None:
    from acecoder.trainer.distributed import free_port

    client = RewardScorer(RewardSpec(kind="rule", executor=f"127.0.0.1:{free_port()}",
                                     deadline=1.0))
    try:
        got = client.submit(samples()[:2]).result(timeout=60)
    finally:
        client.close()
    assert [r.value for r in got] == [None, None]
    assert all(r.error and r.error.startswith("executor:") for r in got)


def test_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="needs an executor"):
        RewardSpec(kind="rule")
    with pytest.raises(ValueError, match="needs an RM server"):
        RewardSpec(kind="mix", executor="x:1")
    with pytest.raises(ValueError, match="rule, rm, mix"):
        RewardSpec(kind="vibes", executor="x:1")
    with pytest.raises(ValueError, match="per_call must be >= 1, got 0"):
        RewardSpec(kind="rule", executor="x:1", per_call=0)
