"""REINFORCE++ as plain tensor functions (the trainer's math, each tested by hand).

Shapes: B sequences (the global batch, or this process's share of it), T response tokens
(right-padded); `mask` [B, T] is 1 on real response tokens and 0 on padding. Per step:

    kl      = kl_estimate(logp, ref_logp, kind)                 # per token, vs frozen reference
    r_tok   = place_rewards(reward, mask) - kl_coef * kl * mask # reward on the last token
    ret     = discounted_returns(r_tok, mask, gamma=1)          # reverse cumulative sum
    adv     = whiten(ret, mask)                                 # over all response tokens
    loss, clip_frac = clipped_policy_loss(logp, old_logp, adv, mask, eps=0.2)

The `baseline` variant first subtracts, from each sample's reward, the mean reward of the
samples of the same prompt (`group_baseline`).
"""

from __future__ import annotations

import torch

KL_KINDS = ("k1", "k2", "k3")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs.

    logp, ref_logp: [B, T]. k1 = log r, k2 = (log r)^2 / 2, k3 = (r^-1 - 1) + log r, with
    log r = logp - ref_logp (Schulman's estimators; k3 is unbiased and never negative).
    """
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio ** 2
    if kind == "k3":
        return torch.exp(-log_ratio) - 1 + log_ratio
    raise ValueError(f"kl kind must be one of {', '.join(KL_KINDS)}, got {kind!r}")


def place_rewards(reward: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """reward [B] on each sequence's last real response token -> [B, T] (zeros elsewhere).
    A sequence with no response token gets nothing."""
    out = torch.zeros(mask.shape, dtype=reward.dtype, device=reward.device)
    lengths = mask.sum(dim=1).long()
    rows = torch.nonzero(lengths > 0).squeeze(-1)
    out[rows, lengths[rows] - 1] = reward[rows]
    return out


def token_rewards(reward: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                  mask: torch.Tensor, *, kl_coef: float = 0.01, kind: str = "k1"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards [B, T], per-token KL [B, T]): the sequence reward on the last
    token minus kl_coef * KL on every response token."""
    kl = kl_estimate(logp, ref_logp, kind) * mask
    return place_rewards(reward, mask) - kl_coef * kl, kl


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor,
                       gamma: float = 1.0) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1}, right to left, over real tokens. [B, T] -> [B, T]."""
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8,
           stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """(x - mean) / std over the real tokens (population std). `stats` = (mean, var) computed
    over a larger batch (all processes') replaces the local ones. Padding stays 0."""
    if stats is None:
        mean = masked_mean(x, mask)
        var = masked_mean((x - mean) ** 2, mask)
    else:
        mean, var = stats
    return (x - mean) * torch.rsqrt(var + eps) * mask


def group_baseline(reward: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """reward [B] minus the mean reward of the samples with the same group id (prompt) [B]."""
    out = reward.clone()
    for g in torch.unique(groups):
        sel = groups == g
        out[sel] = reward[sel] - reward[sel].mean()
    return out


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, eps: float = 0.2
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, token-level mean over real tokens: (loss scalar, share of
    tokens whose ratio was clipped). All inputs [B, T]."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - eps, 1 + eps) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped < unclipped).float(), mask)
    return loss, clip_frac


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-token entropy of the policy's distributions. logits [B, T, V], mask [B, T]."""
    logps = torch.log_softmax(logits.float(), dim=-1)
    return masked_mean(-(logps.exp() * logps).sum(-1), mask)
