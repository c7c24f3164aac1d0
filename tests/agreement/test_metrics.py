"""Each metric against hand-computed values, reference implementations and known noise."""

import math

import numpy as np
import pytest

from app import metrics
from app.agreement import compute


def ranks(groups, ids=None):  # type: ignore[no-untyped-def]
    return metrics.rank_vector(groups)[1]


def test_rank_vector_orders_by_candidate_id_with_group_index():
    ids, vec = metrics.rank_vector([[30], [10, 20], [40]])
    assert ids == (10, 20, 30, 40)
    assert vec.tolist() == [1, 1, 0, 2]


def test_pair_signs_marks_ties_zero():
    # candidates 0..3; 0 best, 1 and 2 tied, 3 worst
    signs = metrics.pair_signs(np.array([0, 1, 1, 2]))
    # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert signs.tolist() == [1, 1, 1, 0, 1, 1]


def test_pairwise_agreement_leaves_out_pairs_tied_by_either():
    a = ranks([[1], [2], [3], [4]])
    b = ranks([[2], [1], [3, 4]])
    # (1,2) disagree, (1,3) (1,4) (2,3) (2,4) agree, (3,4) tied by b: 4 of 5
    share, n = metrics.pairwise_agreement(a, b)
    assert (share, n) == (pytest.approx(0.8), 5)


def test_pairwise_agreement_is_nan_when_everything_tied():
    share, n = metrics.pairwise_agreement(ranks([[1, 2, 3]]), ranks([[1], [2], [3]]))
    assert n == 0 and math.isnan(share)


def test_pairwise_agreement_of_reversed_rankings_is_zero():
    share, n = metrics.pairwise_agreement(ranks([[1], [2], [3], [4]]),
                                          ranks([[4], [3], [2], [1]]))
    assert (share, n) == (0.0, 6)


def test_kendall_tau_b_matches_hand_value_with_ties():
    a = np.array([0, 1, 2, 3])
    b = np.array([1, 0, 2, 2])
    # concordant 4, discordant 1, b ties 1 pair: (4 − 1) / sqrt(6 · 5)
    assert metrics.kendall_tau_b(a, b) == pytest.approx(3 / math.sqrt(30))


@pytest.mark.slow
def test_kendall_tau_b_matches_scipy_on_random_tied_rankings():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for _ in range(50):
        k = int(rng.integers(4, 10))
        a, b = rng.integers(0, 4, k), rng.integers(0, 4, k)
        expected = stats.kendalltau(a, b).statistic  # τ-b is scipy's default variant
        got = metrics.kendall_tau_b(a, b)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_gold_counts_counts_labeler_ties_as_wrong_and_skips_gold_ties():
    gold = ranks([[1], [2], [3, 4]])
    labeler = ranks([[2], [1, 3], [4]])
    # gold pairs: (1,2) (1,3) (1,4) (2,3) (2,4); (3,4) tied in gold → left out.
    # labeler: (1,2) wrong, (1,3) tie → wrong, (1,4) right, (2,3) right, (2,4) right
    assert metrics.gold_counts(labeler, gold) == (3, 5)


def test_position_bias_compares_with_top_group_share():
    first_in_top = np.array([True, True, False, False])
    top = np.array([1, 2, 1, 1])
    k = np.array([4, 4, 4, 4])
    got = metrics.position_bias(first_in_top, top, k)
    assert got["observed"] == 0.5
    assert got["expected"] == pytest.approx((0.25 + 0.5 + 0.25 + 0.25) / 4)
    assert got["ratio"] == pytest.approx(0.5 / 0.3125)


def test_cohen_kappa_hand_value():
    # p_o = .75, p_e = .5·.25 + .5·.75 = .5 → κ = .5
    assert metrics.cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)


def test_cohen_kappa_is_nan_when_chance_agreement_is_certain():
    assert math.isnan(metrics.cohen_kappa([1, 1, 1], [1, 1, 1]))


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) style example: 10 subjects, 14 raters, 5 categories → κ ≈ 0.210.
    table = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])
    assert metrics.fleiss_kappa(table) == pytest.approx(0.210, abs=0.001)


def test_fleiss_kappa_of_two_raters_equals_cohen_with_pooled_marginals():
    # With two raters Fleiss' κ is Scott's π: p_e from pooled marginals.
    a, b = np.array([1, 1, 0, 0, 1, 0]), np.array([1, 0, 0, 0, 1, 1])
    counts = np.column_stack([2 - a - b, a + b])
    p_o = np.mean(a == b)
    p = (a.sum() + b.sum()) / 12
    pi = (p_o - (p**2 + (1 - p) ** 2)) / (1 - (p**2 + (1 - p) ** 2))
    assert metrics.fleiss_kappa(counts) == pytest.approx(pi)


def test_krippendorff_alpha_ordinal_weights_equal_repeated_rows():
    rng = np.random.default_rng(4)
    patterns = rng.integers(0, 3, (6, 7))
    times = rng.integers(1, 4, 6)
    assert metrics.krippendorff_alpha_ordinal(patterns, times) == pytest.approx(
        metrics.krippendorff_alpha_ordinal(np.repeat(patterns, times, axis=0)))


def test_flag_reliability_from_patterns_equals_fleiss_on_every_output():
    rng = np.random.default_rng(6)
    raters = rng.integers(1, 5, 200)
    yes = np.minimum(rng.binomial(raters, 0.2), raters)
    patterns = np.zeros((200, 7), np.int64)
    patterns[:, 3] = raters  # the Likert values do not matter here, only the counts
    flagged = yes > 0
    got = compute.flag_reliability(patterns, np.ones(200, np.int64), raters[flagged],
                                   yes[flagged][:, None].astype(float), ("hallucination",))
    assert got[0]["kappa"] == pytest.approx(metrics.binary_fleiss_kappa(raters, yes))
    assert got[0]["n_units"] == int((raters >= 2).sum())


def test_krippendorff_alpha_ordinal_perfect_agreement_is_one():
    counts = metrics.value_counts(np.array([1, 1, 2, 2, 3, 3]), np.array([2, 2, 5, 5, 7, 7]),
                                  metrics.LIKERT_VALUES)
    assert metrics.krippendorff_alpha_ordinal(counts) == pytest.approx(1.0)


def test_krippendorff_alpha_ordinal_matches_reference_package():
    kd = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(2)
    truth = rng.integers(1, 8, 40)
    data = np.clip(truth + rng.integers(-2, 3, (4, 40)), 1, 7).astype(float)
    data[rng.random((4, 40)) < 0.3] = np.nan  # missing ratings
    expected = kd.alpha(reliability_data=data, level_of_measurement="ordinal",
                        value_domain=list(range(1, 8)))
    coders, units = np.nonzero(~np.isnan(data))
    counts = metrics.value_counts(units, data[coders, units].astype(int), metrics.LIKERT_VALUES)
    assert metrics.krippendorff_alpha_ordinal(counts) == pytest.approx(expected, abs=1e-9)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    n = rng.integers(1, 7, 300).astype(float)
    agree = rng.binomial(n.astype(int), 0.7).astype(float)
    ci1 = metrics.bootstrap_ratio_ci(agree, n, n_boot=400, seed=5)
    ci2 = metrics.bootstrap_ratio_ci(agree, n, n_boot=400, seed=5)
    point = agree.sum() / n.sum()
    assert np.array_equal(ci1, ci2)
    assert ci1[0, 0] < point < ci1[0, 1]
    # 300 tasks of ~3.5 pairs at p = .7: half-width near 1.96·sqrt(.21/1050) ≈ .028
    assert 0.015 < (ci1[0, 1] - ci1[0, 0]) / 2 < 0.045


# --- synthetic labelers with a known noise level ---------------------------------------

def _noisy_columns(sigmas: list[float], n_tasks: int, k: int, seed: int):  # type: ignore[no-untyped-def]
    """Every labeler ranks every task: true scores 0..k-1 plus N(0, σ²) noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_tasks):
        for u, sigma in enumerate(sigmas):
            score = np.arange(k) + rng.normal(0, sigma, k)
            order = np.argsort(-score)
            rank = np.empty(k, np.int8)
            rank[order] = np.arange(k)
            rows.append((t, u, rank))
    n = len(rows)
    return compute.RankingColumns(
        task_id=np.array([r[0] for r in rows]), user_id=np.array([r[1] for r in rows]),
        created_s=np.zeros(n), set_key=np.zeros(n, np.int64), ranks=[r[2] for r in rows],
        category=np.array([""] * n, dtype=object), first_in_top=np.zeros(n, bool),
        top_size=np.ones(n, np.int64),
    )


def _expected_agreement(s1: float, s2: float, k: int) -> float:
    """P(two labelers order a pair alike), averaged over the pairs of k candidates."""
    total = 0.0
    pairs = 0
    for i in range(k):
        for j in range(i + 1, k):
            d = j - i
            q1 = 0.5 * (1 + math.erf(d / (s1 * math.sqrt(2)) / math.sqrt(2)))
            q2 = 0.5 * (1 + math.erf(d / (s2 * math.sqrt(2)) / math.sqrt(2)))
            total += q1 * q2 + (1 - q1) * (1 - q2)
            pairs += 1
    return total / pairs


def test_synthetic_labelers_agree_as_their_noise_predicts():
    sigma, k, n_tasks = 2.0, 6, 600
    cols = _noisy_columns([sigma] * 3, n_tasks, k, seed=7)
    comp = compute.compare(cols)
    measured = comp.agree.sum() / comp.n.sum()
    expected = _expected_agreement(sigma, sigma, k)
    # 600 tasks × 3 labeler pairs × 15 pairs, correlated within task: SE ≈ 0.005;
    # a tolerance of 0.02 is about four standard errors.
    assert measured == pytest.approx(expected, abs=0.02)
    assert 0.6 < expected < 0.85  # the test is in the paper's range, not trivially 1


def test_per_labeler_agreement_ranks_the_noisier_labeler_lowest():
    sigmas, k, n_tasks = [1.0, 1.0, 4.0], 5, 500
    cols = _noisy_columns(sigmas, n_tasks, k, seed=11)
    comp = compute.compare(cols)
    ua, ub = cols.user_id[comp.a], cols.user_id[comp.b]
    tasks, task_idx = np.unique(cols.task_id[comp.a], return_inverse=True)
    lab = compute.labeler_agreement(comp, ua, ub, task_idx, len(tasks), 3)
    ci = metrics.bootstrap_ratio_ci(lab["num_t"], lab["den_t"], n_boot=200, seed=0)
    share = lab["agree"] / lab["n"]
    noisy_expected = _expected_agreement(4.0, 1.0, k)  # against both careful labelers
    careful_expected = (_expected_agreement(1.0, 1.0, k) + _expected_agreement(1.0, 4.0, k)) / 2
    assert share[2] == pytest.approx(noisy_expected, abs=0.025)
    assert share[0] == pytest.approx(careful_expected, abs=0.025)
    assert ci[2, 1] < ci[0, 0]  # the intervals separate them


def test_ranking_pairs_compares_only_same_task_and_candidate_set():
    task = np.array([1, 1, 1, 2, 2])
    key = np.array([7, 7, 8, 7, 7])
    a, b = compute.ranking_pairs(task, key)
    got = sorted(tuple(sorted(p)) for p in zip(a.tolist(), b.tolist(), strict=True))
    assert got == [(0, 1), (3, 4)]


def test_week_index_starts_weeks_on_monday():
    monday = 1709510400  # 2024-03-04 00:00 UTC, a Monday
    w = compute.week_index(np.array([monday - 1, monday, monday + 6 * 86400 + 86399]))
    assert w[0] + 1 == w[1] == w[2]
    assert compute.week_start_s(int(w[1])) == monday
