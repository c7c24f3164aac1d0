"""The maths of the three stages as small pure functions (PAPER.md is the spec).

Shapes in comments: K responses of one prompt, N flat responses of several prompts,
B rollouts, T response tokens, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.records import comparisons_from_groups

Ranking = Sequence[Sequence[int]]


# ----------------------------------------------------------------------------- reward model


def pair_indices(ranking: Ranking, offset: int = 0) -> tuple[list[int], list[int]]:
    """Winner and loser indices of every non-tied pair of one ranking, shifted by offset."""
    pairs = list(comparisons_from_groups(ranking))
    return [w + offset for w, _ in pairs], [loser + offset for _, loser in pairs]


def ranking_loss(scores: torch.Tensor, ranking: Ranking) -> torch.Tensor:
    """Mean over one prompt's non-tied pairs of -log σ(r_w − r_l) (scores (K,))."""
    winners, losers = pair_indices(ranking)
    if not winners:
        return scores.sum() * 0.0  # all tied: no comparison, but keep the graph
    w = torch.tensor(winners, device=scores.device)
    lo = torch.tensor(losers, device=scores.device)
    return -F.logsigmoid(scores[w] - scores[lo]).mean()  # (C,) -> ()


def batched_ranking_loss(
    scores: torch.Tensor, rankings: Sequence[Ranking], sizes: Sequence[int]
) -> torch.Tensor:
    """Mean over prompts of each prompt's ranking_loss; scores (N,) = K_1 + … + K_P flat.

    Each prompt is one batch element whatever its K: its pairs are weighted 1/C_p, so the
    result equals the mean of `ranking_loss` over prompts that have at least one pair.
    """
    winners, losers, weights = [], [], []
    offset, n_prompts = 0, 0
    for ranking, k in zip(rankings, sizes, strict=True):
        w, lo = pair_indices(ranking, offset)
        if w:
            winners += w
            losers += lo
            weights += [1.0 / len(w)] * len(w)
            n_prompts += 1
        offset += k
    if not winners:
        return scores.sum() * 0.0
    device = scores.device
    w_idx, l_idx = torch.tensor(winners, device=device), torch.tensor(losers, device=device)
    weight = torch.tensor(weights, device=device, dtype=scores.dtype)  # (C_total,)
    pair_losses = -F.logsigmoid(scores[w_idx] - scores[l_idx])  # (C_total,)
    return (weight * pair_losses).sum() / n_prompts


def pairwise_accuracy(
    scores: torch.Tensor, rankings: Sequence[Ranking], sizes: Sequence[int]
) -> tuple[int, int]:
    """(correctly ordered pairs, total non-tied pairs) of flat scores (N,); ties in score miss."""
    correct, total, offset = 0, 0, 0
    for ranking, k in zip(rankings, sizes, strict=True):
        w, lo = pair_indices(ranking, offset)
        if w:
            correct += int((scores[w] > scores[lo]).sum())
            total += len(w)
        offset += k
    return correct, total


# ----------------------------------------------------------------------------- SFT


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged over labelled tokens; logits (B, T, V), labels (B, T).

    Positions labelled -100 (prompt and padding) take no loss and get no gradient.
    """
    logits = logits[:, :-1].float()  # position t predicts token t + 1
    targets = labels[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
    )


# ----------------------------------------------------------------------------- masked reductions


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over positions where mask is 1 (all of them, or along dim)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise x to unit variance (and zero mean) over the masked positions."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return out if shift_mean else out + mean


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution per position; logits (..., V) -> (...)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under logits; logits (B, T, V), tokens (B, T) -> (B, T)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


# ----------------------------------------------------------------------------- PPO


def kl_shaped_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token reward: −β·log(π_RL/π_SFT) on every token, plus the RM score on the last.

    scores (B,), logprobs/ref_logprobs/mask (B, T) with the mask a prefix of ones.
    Returns (rewards (B, T), per-token log-ratio (B, T)); both are zero where mask is 0.
    Summed over tokens, rewards = r(x, y) − β · Σ_t log-ratio, PAPER.md's R(x, y).
    """
    mask = mask.to(logprobs.dtype)
    log_ratio = (logprobs - ref_logprobs) * mask  # (B, T)
    rewards = -beta * log_ratio
    last = (mask.sum(1).long() - 1).clamp(min=0)  # (B,) index of the last response token
    rewards[torch.arange(len(scores)), last] += scores.to(rewards.dtype)
    return rewards * mask, log_ratio


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """KL(π_RL ‖ π_SFT) per episode, from tokens sampled from π_RL: Σ_t (ρ − 1) − log ρ with
    ρ = π_SFT/π_RL (Schulman's k3). Unbiased like the plain Σ log-ratio, but every term is
    ≥ 0, so a reported KL is never negative however few episodes it averages.

    logprobs/ref_logprobs/mask (B, T); returns (B,).
    """
    mask = mask.to(logprobs.dtype)
    log_rho = (ref_logprobs - logprobs) * mask  # (B, T), zero where masked
    return ((torch.expm1(log_rho) - log_rho) * mask).sum(1)


def rlhf_objective(
    reward: float, log_ratio_sum: float, beta: float, ptx_loglik: float = 0.0, gamma: float = 0.0
) -> float:
    """PAPER.md's objective for one episode: r − β·Σ log-ratio + γ·log-likelihood of pretraining."""
    return reward - beta * log_ratio_sum + gamma * ptx_loglik


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; rewards/values/mask (B, T) -> (advantages, returns).

    The episode ends after the last masked token: the value beyond it is 0.
    """
    mask = mask.to(values.dtype)
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_mask = mask[:, t + 1] if t + 1 < T else torch.zeros_like(last_gae)
        next_value = values[:, t + 1] * next_mask if t + 1 < T else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        last_gae = delta + gamma * lam * next_mask * last_gae
        advantages[:, t] = last_gae
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate loss (to minimise) and the fraction of tokens clipped; inputs (B, T)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_frac


def episode_policy_loss(
    token_loss_mean: torch.Tensor,
    mask: torch.Tensor,
    ptx_nll: torch.Tensor | None = None,
    gamma: float = 0.0,
) -> torch.Tensor:
    """PPO-ptx's policy loss with PAPER.md's per-episode normalisation.

    `token_loss_mean` is the clipped surrogate averaged over the minibatch's response
    tokens (`ppo_clip_loss`); times tokens / episodes it becomes the surrogate summed over
    each episode's tokens and averaged over episodes: the return R(x, y) is a sum over the
    episode, so is its gradient. The pretraining term is γ × the mean negative
    log-likelihood per pretraining token (`ptx_nll`). So γ weighs one pretraining token
    against one whole episode; a token mean for both would make γ = 27.8 outweigh the RL
    signal by the response length.
    """
    episodes = mask.shape[0]
    loss = token_loss_mean * mask.to(token_loss_mean.dtype).sum() / max(episodes, 1)
    if ptx_nll is not None and gamma:
        loss = loss + gamma * ptx_nll
    return loss


def value_clip_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> torch.Tensor:
    """Clipped value loss ½·max((v − R)², (clip(v) − R)²) averaged over mask; inputs (B, T)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    loss = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)


@dataclass
class AdaptiveKLController:
    """Ziegler et al. (2019): steer β so the measured KL tracks a target (±20 % per horizon)."""

    value: float
    target: float
    horizon: int = 10_000

    def update(self, current_kl: float, n_steps: int) -> float:
        """Update β from the KL of the last batch of n_steps episodes; returns the new β."""
        error = max(-0.2, min(0.2, current_kl / self.target - 1.0))
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
