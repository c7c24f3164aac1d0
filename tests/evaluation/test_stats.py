"""The campaign statistics on simulated judges whose preferences are known."""

import numpy as np
import pytest
from scipy import stats as sps

from app.evaluation import stats
from app.evaluation.stats import BASELINE, BOTH_BAD, CANDIDATE, TIE


def _judgments(rng, *, g: int, prompts: int, overlap: int, p: float, tie: float,
               spread: float = 8.0) -> tuple[np.ndarray, float]:
    """G simulated campaigns: the candidate's score of every judgment, (T, overlap, G).

    Each prompt has its own preference p_t ~ Beta with mean p (prompts differ, so the
    judgments of one prompt are correlated); each judge ties with probability `tie`, else
    the candidate wins with probability p_t. The true win rate is p(1-tie) + tie/2.
    """
    p_t = rng.beta(p * spread, (1 - p) * spread, size=(prompts, 1, g))
    u = rng.random((prompts, overlap, g))
    tied = rng.random((prompts, overlap, g)) < tie
    score = np.where(tied, 0.5, (u < p_t).astype(float))
    return score, p * (1 - tie) + tie / 2


def _campaigns(rng, **kw) -> tuple[np.ndarray, np.ndarray, float]:
    """The same as per-prompt sums (T, G): Σ scores and Σ judgments."""
    score, truth = _judgments(rng, **kw)
    return score.sum(axis=1), np.full(score.sum(axis=1).shape, float(score.shape[1])), truth


def _coverage(cis: np.ndarray, truth: float) -> float:
    return float(np.mean((cis[:, 0] <= truth) & (truth <= cis[:, 1])))


def test_win_rate_ci_covers_the_true_preference_in_about_95_percent_of_campaigns():
    rng = np.random.default_rng(7)
    score, truth = _judgments(rng, g=1000, prompts=120, overlap=5, p=0.7, tie=0.2, spread=2)
    num, den = score.sum(axis=1), np.full((120, 1000), 5.0)
    covered = _coverage(stats.ratio_cis(num, den, n_boot=1000, seed=1), truth)
    assert 0.925 <= covered <= 0.975, covered
    # Resampling judgments as if they were independent ignores that a prompt's judgments
    # go together: those intervals are too narrow and miss the truth far more often.
    flat = score.reshape(120 * 5, 1000)
    naive = _coverage(stats.ratio_cis(flat, np.ones_like(flat), n_boot=1000, seed=1), truth)
    assert naive < 0.88, naive


def test_win_rate_ci_is_not_a_constant_width_guess():
    rng = np.random.default_rng(3)
    small = stats.ratio_cis(*_campaigns(rng, g=50, prompts=30, overlap=1, p=0.6, tie=0)[:2])
    big = stats.ratio_cis(*_campaigns(rng, g=50, prompts=600, overlap=1, p=0.6, tie=0)[:2])
    assert np.mean(small[:, 1] - small[:, 0]) > 3 * np.mean(big[:, 1] - big[:, 0])


def test_win_rate_agrees_with_scipy_bootstrap_on_many_prompt_clusters():
    rng = np.random.default_rng(11)
    prompts = np.repeat(np.arange(80), 2)
    outcomes = rng.choice([CANDIDATE, BASELINE, TIE, BOTH_BAD], p=[.5, .3, .15, .05],
                          size=prompts.size)
    rate = stats.win_rate(prompts, outcomes)
    s = stats.scores(outcomes)
    assert rate.value == pytest.approx((np.sum(outcomes == CANDIDATE)
                                        + 0.5 * np.sum(outcomes >= TIE)) / outcomes.size)
    num, den = stats.cluster_sums(prompts, s), stats.cluster_sums(prompts, np.ones(s.size))
    ref = sps.bootstrap((num, den), lambda a, b, axis=-1: a.sum(axis) / b.sum(axis),
                        paired=True, vectorized=True, n_resamples=4000, method="percentile",
                        random_state=np.random.default_rng(5)).confidence_interval
    # On many prompts and a middling rate the closed form and the bootstrap agree; the
    # continuity correction makes it a little wider.
    assert rate.ci95 is not None
    assert rate.ci95[0] == pytest.approx(ref.low, abs=0.025)
    assert rate.ci95[1] == pytest.approx(ref.high, abs=0.025)
    assert rate.ci95[0] <= ref.low + 0.005 and rate.ci95[1] >= ref.high - 0.005


def test_win_rate_ci_does_not_collapse_at_the_extremes_or_small_n():
    none = stats.win_rate(np.arange(6), np.full(6, BASELINE))
    assert none.value == 0.0 and none.ci95 is not None
    assert none.ci95[0] == 0.0 and 0.3 < none.ci95[1] < 0.6, none.ci95  # not [0, 0]
    every = stats.win_rate(np.arange(6), np.full(6, CANDIDATE))
    assert every.ci95 is not None and every.ci95[1] == 1.0 and 0.4 < every.ci95[0] < 0.7
    one = stats.win_rate(np.array([1]), np.array([CANDIDATE]))
    assert one.ci95 is not None and one.ci95[0] < 0.2  # one judgment proves little
    # Five labelers agreeing on one prompt are one prompt's worth of evidence, not five.
    same_prompt = stats.win_rate(np.zeros(5, int), np.full(5, CANDIDATE))
    five_prompts = stats.win_rate(np.arange(5), np.full(5, CANDIDATE))
    assert same_prompt.ci95[0] < five_prompts.ci95[0]  # type: ignore[index]


@pytest.mark.parametrize("p", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("overlap", [1, 3])
def test_win_rate_ci_covers_at_small_n_and_at_the_extremes(p: float, overlap: int):
    """Simulated campaigns of 6..30 prompts (seeded): the 95% CI holds the true win rate
    in at least ~93% of them at every n, at p = 0.05 and 0.95 as at 0.5."""
    rng = np.random.default_rng(2024)
    worst = 1.0
    for prompts in range(6, 31):
        score, truth = _judgments(rng, g=400, prompts=prompts, overlap=overlap, p=p, tie=0)
        clusters = np.repeat(np.arange(prompts), overlap)
        hit = 0
        for g in range(score.shape[2]):
            lo, hi = stats.cluster_wilson(clusters, score[:, :, g].reshape(-1))
            hit += lo <= truth <= hi
        worst = min(worst, hit / score.shape[2])
    assert worst >= 0.93, (p, overlap, worst)


def test_win_rate_counts_ties_and_both_bad_as_half():
    rate = stats.win_rate(np.arange(4), np.array([CANDIDATE, BASELINE, TIE, BOTH_BAD]))
    assert rate.value == 0.5 and rate.n == 4
    assert stats.outcome_rate(np.array([TIE, TIE, BOTH_BAD, CANDIDATE]), TIE) == 0.5
    assert stats.win_rate(np.array([]), np.array([])).value is None


def test_position_bias_sees_a_judge_who_prefers_slot_a():
    rng = np.random.default_rng(0)
    n = 400
    chose_a = rng.random(n) < 0.75
    decisive = np.ones(n, bool)
    decisive[:50] = False
    bias = stats.position_bias(np.arange(n), chose_a, decisive)
    assert bias.n == 350
    assert bias.ci95 is not None and bias.ci95[0] > 0.5
    fair = stats.position_bias(np.arange(n), rng.random(n) < 0.5, np.ones(n, bool))
    assert fair.ci95 is not None and fair.ci95[0] < 0.5 < fair.ci95[1]


def test_agreement_pools_pairs_of_judgments_of_one_item():
    items = np.array([1, 1, 1, 2, 2, 3])
    outcomes = np.array([CANDIDATE, CANDIDATE, BASELINE, TIE, TIE, CANDIDATE])
    share, pairs = stats.agreement(items, outcomes)
    assert pairs == 3 + 1  # item 3 has one judgment: no pair
    assert share == pytest.approx(2 / 4)
    same, others = stats.agreement_per_judgment(items, outcomes)
    assert same.tolist() == [1, 1, 0, 1, 1, 0]
    assert others.tolist() == [2, 2, 2, 1, 1, 0]


def _battles(rng, strengths: np.ndarray, anchor: int, prompts: int, tie: float = 0.1):
    """Each other version against the anchor on every prompt, judged by BT with ties."""
    first, second, score, clusters = [], [], [], []
    for m in range(len(strengths)):
        if m == anchor:
            continue
        p = 1 / (1 + np.exp(strengths[anchor] - strengths[m]))
        won = rng.random(prompts) < p
        tied = rng.random(prompts) < tie
        first += [m] * prompts
        second += [anchor] * prompts
        score += list(np.where(tied, 0.5, won.astype(float)))
        clusters += list(range(prompts))
    return (np.array(clusters), np.array(first), np.array(second), np.array(score))


def test_bradley_terry_recovers_a_known_ordering_with_cis():
    rng = np.random.default_rng(4)
    truth = np.array([0.0, 1.2, -0.6, 0.5])  # version 0 is the baseline
    point, ci = stats.bradley_terry(*_battles(rng, truth, 0, prompts=400), n_models=4,
                                    anchor=0, n_boot=300)
    assert list(np.argsort(point)) == list(np.argsort(truth))
    assert point[0] == pytest.approx(stats.ELO_ANCHOR)
    elo_truth = stats.ELO_ANCHOR + stats.ELO_SCALE * truth
    for m in (1, 2, 3):
        assert ci[m, 0] < point[m] < ci[m, 1]
        assert ci[m, 0] - 40 < elo_truth[m] < ci[m, 1] + 40


def test_bradley_terry_fit_matches_the_closed_form_against_one_opponent():
    # One version against the anchor: the MLE log-odds is log(wins / losses).
    wins = np.array([[0.0, 10.0], [30.0, 0.0]])  # version 1 beat the anchor 30 times of 40
    theta = stats.bt_fit(wins, anchor=0)
    prior = stats.BT_PRIOR / 2
    assert theta[1] == pytest.approx(np.log((30 + prior) / (10 + prior)), abs=1e-6)


def test_bradley_terry_stays_finite_when_a_version_never_loses():
    wins = np.array([[0.0, 0.0], [25.0, 0.0]])
    assert np.isfinite(stats.bt_fit(wins, anchor=0)).all()
