"""The loss maths against hand-computed values (PAPER.md worked checks)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.losses import (
    AdaptiveKLController,
    batched_ranking_loss,
    entropy,
    gae,
    kl_shaped_rewards,
    masked_mean,
    pairwise_accuracy,
    ppo_clip_loss,
    ranking_loss,
    rlhf_objective,
    value_clip_loss,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(-x))  # -log σ(x)


def test_ranking_loss_matches_paper_worked_check():
    scores = torch.tensor([1.8, 0.9, 0.3, -0.5])
    loss = ranking_loss(scores, [[0], [1], [2], [3]])
    assert loss.item() == pytest.approx(0.278, abs=5e-4)


def test_ranking_loss_with_tie_averages_only_untied_pairs():
    scores = torch.tensor([1.0, 0.5, 0.2])
    loss = ranking_loss(scores, [[0], [1, 2]])  # 1 ~ 2 tied: pairs (0,1), (0,2)
    assert loss.item() == pytest.approx((softplus(0.5) + softplus(0.8)) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(0.422589, abs=1e-5)


def test_ranking_loss_all_tied_is_zero_with_gradient_path():
    scores = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = ranking_loss(scores, [[0, 1]])
    loss.backward()
    assert loss.item() == 0.0 and scores.grad.abs().sum() == 0


def test_ranking_loss_order_matters():
    scores = torch.tensor([0.0, 3.0])
    assert ranking_loss(scores, [[1], [0]]) < ranking_loss(scores, [[0], [1]])


@st.composite
def scored_rankings(draw):
    k = draw(st.integers(2, 9))
    scores = draw(st.lists(st.floats(-5, 5), min_size=k, max_size=k))
    perm = draw(st.permutations(range(k)))
    cuts = sorted(set(draw(st.lists(st.integers(1, k - 1), max_size=k - 1))))
    bounds = [0, *cuts, k]
    groups = [list(perm[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return scores, groups


@settings(max_examples=60, deadline=None, derandomize=True)
@given(scored_rankings())
def test_ranking_loss_equals_mean_of_expanded_pairs(case):
    scores, groups = case
    pairs = [
        softplus(scores[w] - scores[lo])
        for i, g in enumerate(groups)
        for worse in groups[i + 1 :]
        for w in g
        for lo in worse
    ]
    expected = sum(pairs) / len(pairs) if pairs else 0.0
    got = ranking_loss(torch.tensor(scores, dtype=torch.float64), groups).item()
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_batched_ranking_loss_is_mean_of_per_prompt_losses():
    torch.manual_seed(0)
    rankings = [[[0], [1], [2], [3]], [[2], [0, 1]], [[0, 1]], [[4], [3], [2], [1], [0]]]
    sizes = [4, 3, 2, 5]
    scores = torch.randn(sum(sizes), dtype=torch.float64)
    per_prompt, offset = [], 0
    for ranking, k in zip(rankings, sizes, strict=True):
        if len(ranking) > 1:  # the all-tied prompt gives no pair and is not counted
            per_prompt.append(ranking_loss(scores[offset : offset + k], ranking))
        offset += k
    expected = torch.stack(per_prompt).mean()
    assert batched_ranking_loss(scores, rankings, sizes).item() == pytest.approx(expected.item())


def test_pairwise_accuracy_counts_untied_pairs():
    scores = torch.tensor([3.0, 1.0, 2.0, 0.0, 0.0])
    rankings = [[[0], [1], [2]], [[0], [1]]]  # pairs: 0>1 ok, 0>2 ok, 1>2 wrong; 3>4 equal: miss
    assert pairwise_accuracy(scores, rankings, [3, 2]) == (2, 4)


def test_kl_shaped_rewards_match_hand_computation():
    scores = torch.tensor([2.0, -1.0])
    logprobs = torch.tensor([[-1.0, -2.0, -0.5, -9.0], [-1.0, -3.0, -7.0, -7.0]])
    ref = torch.tensor([[-1.5, -1.5, -1.0, -1.0], [-2.0, -3.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    rewards, log_ratio = kl_shaped_rewards(scores, logprobs, ref, mask, beta=0.1)
    expected = torch.tensor([[-0.05, 0.05, -0.05 + 2.0, 0.0], [-0.1, 0.0 - 1.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)
    torch.testing.assert_close(log_ratio.sum(1), torch.tensor([0.5, 1.0]))
    # summed over tokens this is PAPER.md's R(x, y) = r − β Σ log-ratio
    torch.testing.assert_close(rewards.sum(1), scores - 0.1 * log_ratio.sum(1))


def test_objective_matches_paper_worked_check():
    value = rlhf_objective(reward=2.1, log_ratio_sum=0.86, beta=0.02, ptx_loglik=-3.2, gamma=0.1)
    assert value == pytest.approx(1.763, abs=5e-4)
    assert value == pytest.approx(2.1 - 0.0172 - 0.32)


def test_gae_matches_hand_computation_and_stops_at_mask():
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 9.0]])
    mask = torch.tensor([[1, 1, 0]])
    adv, ret = gae(rewards * mask, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.8, 0.0]]))  # Σ rewards − V_t
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 0.0]]))
    adv, _ = gae(rewards * mask, values, mask, gamma=1.0, lam=0.5)
    # δ1 = 1 − 0.2 = 0.8; δ0 = 0 + 0.2 − 0.5 = −0.3; A0 = −0.3 + 0.5·0.8
    torch.testing.assert_close(adv, torch.tensor([[0.1, 0.8, 0.0]]))


def test_ppo_clip_loss_clips_only_in_the_profitable_direction():
    old = torch.zeros(1, 2)
    new = torch.tensor([[0.5, 0.5]])  # ratio e^0.5 ≈ 1.649 > 1.2
    adv = torch.tensor([[1.0, -1.0]])
    loss, clip_frac = ppo_clip_loss(new, old, adv, torch.ones(1, 2), clip=0.2)
    # +adv: clipped to 1.2 -> −1.2; −adv: pessimistic unclipped e^0.5
    assert loss.item() == pytest.approx((-1.2 + math.exp(0.5)) / 2, abs=1e-6)
    assert clip_frac.item() == pytest.approx(0.5)


def test_value_clip_loss_matches_hand_computation():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.0, 0.0]])
    returns = torch.tensor([[2.0, 0.5]])
    mask = torch.tensor([[1, 1]])
    # pos 0: max((1−2)², (0.2−2)²) = 3.24; pos 1: max(0.25, 0.25) = 0.25
    loss = value_clip_loss(values, old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (3.24 + 0.25) / 2)


def test_masked_mean_and_entropy():
    x = torch.tensor([[1.0, 2.0, 100.0]])
    assert masked_mean(x, torch.tensor([[1, 1, 0]])).item() == pytest.approx(1.5)
    assert entropy(torch.zeros(2, 7)).tolist() == pytest.approx([math.log(7)] * 2)


def test_adaptive_kl_controller_moves_beta_towards_target():
    ctl = AdaptiveKLController(value=0.1, target=6.0, horizon=1000)
    assert ctl.update(current_kl=12.0, n_steps=100) == pytest.approx(0.1 * 1.02)
    ctl = AdaptiveKLController(value=0.1, target=6.0, horizon=1000)
    assert ctl.update(current_kl=5.4, n_steps=100) == pytest.approx(0.1 * (1 - 0.01))


def test_ptx_gamma_weighs_a_pretraining_token_against_a_whole_episode():
    from training.losses import episode_policy_loss, ppo_clip_loss

    # two episodes of 3 and 1 response tokens; ratio 1 so the surrogate is −advantage
    logp = torch.zeros(2, 3)
    adv = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    token_mean, _ = ppo_clip_loss(logp, logp, adv, mask)
    assert token_mean.item() == pytest.approx(-(1 + 2 + 3 + 4) / 4)
    # per episode: (−6 + −4) / 2 episodes, plus γ × the per-token pretraining NLL
    loss = episode_policy_loss(token_mean, mask, torch.tensor(2.0), gamma=27.8)
    assert loss.item() == pytest.approx(-5.0 + 27.8 * 2.0)
    # the same per-token surrogate on episodes twice as long: the RL part doubles, γ's not
    long_mask = torch.ones(2, 6)
    assert episode_policy_loss(token_mean, long_mask).item() == pytest.approx(2 * 3 * -2.5)


def test_kl_estimate_matches_hand_computation_and_is_never_negative():
    from training.losses import kl_estimate

    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -9.0], [-0.3, -2.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    got = kl_estimate(logprobs, ref, mask)
    # per token (e^d − 1) − d with d = ref − logp; the masked token counts nothing
    want = [sum(math.expm1(d) - d for d in (-0.5, 1.0)),
            sum(math.expm1(d) - d for d in (-0.2, 1.0, 0.0))]
    assert got.tolist() == pytest.approx(want)
    # Samples where the policy is less likely than SFT: the log-ratio sum is negative,
    # the estimate is not.
    assert ((logprobs - ref) * mask).sum(1)[1] < 0 <= got[1]
    noisy = torch.randn(64, 10)
    assert (kl_estimate(noisy, torch.randn(64, 10), torch.ones(64, 10)) >= 0).all()
