"""REINFORCE++'s math against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from acecoder.trainer import reinforce as rpp

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_kl_estimators() -> None:
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    # log r = 0.5, -1
    assert rpp.kl_estimate(logp, ref, "k1").tolist() == [[0.5, -1.0]]
    assert rpp.kl_estimate(logp, ref, "k2").tolist() == [[0.125, 0.5]]
    k3 = rpp.kl_estimate(logp, ref, "k3")[0].tolist()
    assert k3 == pytest.approx([math.exp(-0.5) - 1 + 0.5, math.exp(1) - 1 - 1])
    assert all(v >= 0 for v in k3)
    with pytest.raises(ValueError, match="k1, k2, k3"):
        rpp.kl_estimate(logp, ref, "k4")


def test_the_reward_sits_on_the_last_response_token() -> None:
    placed = rpp.place_rewards(torch.tensor([1.0, 0.5, 2.0]),
                               torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    assert placed.tolist() == [[0, 0, 1.0], [0, 0.5, 0], [0, 0, 0]]


def test_token_rewards_subtract_the_kl_on_real_tokens() -> None:
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, -5.0]])
    ref = torch.tensor([[-2.0, -1.0, -0.5], [-1.5, -1.0, -1.0]])
    r, kl = rpp.token_rewards(torch.tensor([1.0, 0.0]), logp, ref, MASK, kl_coef=0.1)
    assert kl.tolist() == [[1.0, 0.0, -0.5], [0.5, 0.0, 0.0]]  # padding's KL dropped
    assert r.flatten().tolist() == pytest.approx([-0.1, 0.0, 1.05, -0.05, 0.0, 0.0])


def test_returns_are_the_reverse_cumulative_sum() -> None:
    r = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 99.0]])
    assert rpp.discounted_returns(r, MASK).tolist() == [[6.0, 5.0, 3.0], [9.0, 5.0, 0.0]]
    assert rpp.discounted_returns(r, MASK, gamma=0.5).tolist() == [
        [1 + 0.5 * (2 + 0.5 * 3), 2 + 1.5, 3.0], [4 + 2.5, 5.0, 0.0]]


def test_whitening_uses_only_real_tokens() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 1000.0]])
    w = rpp.whiten(x, MASK)
    # mean 3, population variance (4+1+0+1+4)/5 = 2
    want = [[(v - 3) / math.sqrt(2) for v in (1, 2, 3)], [(4 - 3) / math.sqrt(2),
                                                          (5 - 3) / math.sqrt(2), 0.0]]
    assert w.tolist() == [pytest.approx(row, rel=1e-6) for row in want]
    given = rpp.whiten(x, MASK, stats=(torch.tensor(0.0), torch.tensor(4.0)))
    assert given[0].tolist() == pytest.approx([0.5, 1.0, 1.5])


def test_group_baseline() -> None:
    out = rpp.group_baseline(torch.tensor([1.0, 0.0, 0.5, 0.5, 1.0]),
                             torch.tensor([0, 0, 1, 1, 2]))
    assert out.tolist() == [0.5, -0.5, 0.0, 0.0, 0.0]


def test_clipped_policy_loss_by_hand() -> None:
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    loss, clip_frac = rpp.clipped_policy_loss(logp, old, adv, torch.ones(1, 3), eps=0.2)
    # token 1: min(1.5, 1.2) = 1.2 (clipped); token 2: min(-0.5, -0.8) = -0.8 (clipped);
    # token 3: min(2.2, 2.2) = 2.2
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 2.2) / 3)
    assert clip_frac.item() == pytest.approx(2 / 3)
    masked, _ = rpp.clipped_policy_loss(logp, old, adv, torch.tensor([[1.0, 0.0, 1.0]]))
    assert masked.item() == pytest.approx(-(1.2 + 2.2) / 2)


def test_the_policy_gradient_points_along_the_advantage() -> None:
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = rpp.clipped_policy_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]),
                                      torch.ones(1, 2))
    loss.backward()
    assert logp.grad.tolist() == [[-0.5, 0.5]]  # descent raises the good token's log-prob


def test_entropy() -> None:
    uniform = torch.zeros(1, 2, 4)
    assert rpp.entropy(uniform, torch.ones(1, 2)).item() == pytest.approx(math.log(4))
    peaked = torch.tensor([[[100.0, 0.0, 0.0, 0.0]]])
    assert rpp.entropy(peaked, torch.ones(1, 1)).item() == pytest.approx(0.0, abs=1e-6)
