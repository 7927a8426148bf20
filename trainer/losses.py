"""Losses and metrics of the reward-model trainer, as plain tensor functions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r(x, y+) - r(x, y-)).

    chosen, rejected: [B] scores of the preferred and the dispreferred response.
    Returns a scalar. (logsigmoid is the stable form: no overflow for large margins.)
    """
    if chosen.shape != rejected.shape or chosen.dim() != 1:
        raise ValueError(f"chosen and rejected must be [B] alike, got {tuple(chosen.shape)} "
                         f"and {tuple(rejected.shape)}")
    return -F.logsigmoid(chosen - rejected).mean()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs whose chosen response scores strictly higher. [B], [B] -> float."""
    if chosen.numel() == 0:
        return math.nan
    return float((chosen > rejected).float().mean())


def cosine_with_warmup(step: int, *, total: int, warmup: int, floor: float = 0.0) -> float:
    """Learning-rate multiplier: linear from 0 to 1 over `warmup` steps, then cosine down to
    `floor` at `total`."""
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
