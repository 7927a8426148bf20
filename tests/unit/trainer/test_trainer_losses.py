"""The RM trainer's math against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from acecoder.trainer.losses import bradley_terry_loss, cosine_with_warmup, pairwise_accuracy


def test_bradley_terry_loss_by_hand() -> None:
    chosen = torch.tensor([2.0, 0.0, -1.0])
    rejected = torch.tensor([0.0, 0.0, 1.0])
    # -log s(2), -log s(0) = log 2, -log s(-2)
    want = (math.log1p(math.exp(-2)) + math.log(2) + math.log1p(math.exp(2))) / 3
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(want, rel=1e-6)
    # stable for huge margins: no inf, no nan
    big = bradley_terry_loss(torch.tensor([1e4]), torch.tensor([-1e4]))
    assert big.item() == 0.0
    assert bradley_terry_loss(torch.tensor([-1e4]), torch.tensor([1e4])).item() == pytest.approx(
        2e4)
    with pytest.raises(ValueError, match="alike"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(2))


def test_the_loss_gradient_pushes_the_pair_apart() -> None:
    chosen = torch.tensor([0.5], requires_grad=True)
    rejected = torch.tensor([0.5], requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    assert chosen.grad.item() == pytest.approx(-0.5) and rejected.grad.item() == pytest.approx(0.5)


def test_pairwise_accuracy() -> None:
    assert pairwise_accuracy(torch.tensor([1.0, 0.0, 2.0, 1.0]),
                             torch.tensor([0.0, 0.0, 3.0, 0.5])) == 0.5  # a tie is not a win
    assert math.isnan(pairwise_accuracy(torch.zeros(0), torch.zeros(0)))


def test_cosine_with_warmup() -> None:
    lrs = [cosine_with_warmup(s, total=10, warmup=2) for s in range(11)]
    assert lrs[0] == pytest.approx(1 / 3) and lrs[1] == pytest.approx(2 / 3)
    assert lrs[2] == pytest.approx(1.0)  # warmup done: the peak
    assert lrs[6] == pytest.approx(0.5)  # half way down the cosine
    assert lrs[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    assert cosine_with_warmup(10, total=10, warmup=0, floor=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        cosine_with_warmup(0, total=0, warmup=0)
