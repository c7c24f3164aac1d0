"""The statistics of a campaign as pure numpy functions (no database).

A judgment is one labeler's answer on one item (a prompt, the baseline's output and one
candidate's output). Its *score* for the candidate is 1 (candidate better), 0 (baseline
better) or ½ (tie, or both bad: neither is preferred, as Chatbot Arena counts "both bad").
The win rate is the mean score, (wins + ½ ties) / N.

Outputs of one prompt are not independent (a hard prompt is hard for both sides, and one
prompt may be judged by several labelers), so every interval counts *prompts*, not
judgments. A win rate's interval is Wilson's score interval with a continuity correction
on the effective number of judgments: N divided by the design effect of the prompt
clusters (the cluster-robust variance of Σ scores / Σ judgments over the binomial one).
Unlike a percentile bootstrap it does not shrink to a point when every judgment agrees
(0 wins of 6 is [0, 0.48], not [0, 0]) and it covers the truth in at least ~95% of
campaigns from 6 prompts up, at p = 0.05 as at p = 0.5 (tests/evaluation/test_stats.py).
"""

from dataclasses import dataclass
from math import log, sqrt

import numpy as np

from app.metrics import bootstrap_ratio_ci

CANDIDATE, BASELINE, TIE, BOTH_BAD = 0, 1, 2, 3
OUTCOME_CODES = {"candidate": CANDIDATE, "baseline": BASELINE, "tie": TIE, "both_bad": BOTH_BAD}
SCORE = np.array([1.0, 0.0, 0.5, 0.5])  # the candidate's score per outcome code
N_BOOT = 2000
ELO_SCALE = 400 / log(10)  # Chatbot Arena's scale: 400 points = 10× the odds
ELO_ANCHOR = 1000.0  # the baseline's score
BT_PRIOR = 0.5  # virtual tied games of each version against the baseline (keeps it finite)
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def scores(outcomes: np.ndarray) -> np.ndarray:
    """The candidate's score of each judgment (outcome codes → 1, 0, ½, ½)."""
    return SCORE[np.asarray(outcomes, dtype=np.int64)]


def cluster_sums(clusters: np.ndarray, values: np.ndarray, n: int | None = None) -> np.ndarray:
    """Per-cluster sums of values (clusters are 0..n-1 indices)."""
    clusters = np.asarray(clusters, dtype=np.int64)
    n = int(clusters.max()) + 1 if n is None and clusters.size else (n or 0)
    return np.bincount(clusters, weights=np.asarray(values, dtype=np.float64), minlength=n)


def dense(ids: np.ndarray) -> np.ndarray:
    """Ids (any integers) as 0..k-1 cluster indices."""
    return np.unique(np.asarray(ids), return_inverse=True)[1].reshape(-1)


def ratio_cis(num: np.ndarray, den: np.ndarray, *, n_boot: int = N_BOOT,
              seed: int = 0) -> np.ndarray:
    """95% percentile-bootstrap CIs of Σnum/Σden for G statistics at once, resampling the
    T clusters (rows): num, den (T, G) → (G, 2). Vectorised, seeded."""
    return bootstrap_ratio_ci(num, den, n_boot=n_boot, seed=seed)


def wilson_cc(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval with continuity correction (Newcombe 1998, method 4) for a
    share p of n (n may be fractional: an effective sample size)."""
    if n <= 0:
        return 0.0, 1.0
    den = 2 * (n + z * z)
    lo = (2 * n * p + z * z - 1
          - z * sqrt(max(0.0, z * z - 2 - 1 / n + 4 * p * (n * (1 - p) + 1)))) / den
    hi = (2 * n * p + z * z + 1
          + z * sqrt(max(0.0, z * z + 2 - 1 / n + 4 * p * (n * (1 - p) - 1)))) / den
    return (0.0 if p <= 0 else max(0.0, lo)), (1.0 if p >= 1 else min(1.0, hi))


def effective_n(clusters: np.ndarray, values: np.ndarray) -> float:
    """N over the design effect of the clusters: how many independent judgments the
    clustered ones are worth (never more than N, never fewer than one)."""
    t = dense(clusters)
    n, k = len(values), int(t.max()) + 1 if len(values) else 0
    if n == 0:
        return 0.0
    num, den = cluster_sums(t, values, k), cluster_sums(t, np.ones(n), k)
    p = float(num.sum() / n)
    binomial = p * (1 - p) / n
    if k < 2 or binomial <= 0:
        # No spread to measure: count the prompts, the most that can be independent.
        return float(max(1, k))
    robust = k / (k - 1) * float(np.sum((num - p * den) ** 2)) / n**2
    return float(min(n, max(1.0, n * binomial / robust))) if robust > 0 else float(n)


def cluster_wilson(clusters: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """95% CI of the mean of values in [0, 1] judged in clusters (prompts)."""
    values = np.asarray(values, dtype=np.float64)
    return wilson_cc(float(values.mean()), effective_n(clusters, values))


@dataclass(frozen=True)
class Rate:
    """A share with its 95% CI and the count it is over."""

    value: float | None
    ci95: tuple[float, float] | None
    n: int


def _rate(clusters: np.ndarray, hits: np.ndarray, *, n_boot: int, seed: int) -> Rate:
    # n_boot and seed are kept for callers; the interval is closed-form (see the top).
    n = int(len(hits))
    if n == 0:
        return Rate(None, None, 0)
    lo, hi = cluster_wilson(clusters, hits)
    return Rate(float(np.mean(hits)), (float(lo), float(hi)), n)


def win_rate(prompts: np.ndarray, outcomes: np.ndarray, *, n_boot: int = N_BOOT,
             seed: int = 0) -> Rate:
    """(wins + ½ ties) / N with a 95% CI resampling prompts."""
    return _rate(prompts, scores(outcomes), n_boot=n_boot, seed=seed)


def outcome_rate(outcomes: np.ndarray, code: int) -> float | None:
    """Share of judgments with this outcome (None when there are none)."""
    outcomes = np.asarray(outcomes)
    return float(np.mean(outcomes == code)) if outcomes.size else None


def position_bias(prompts: np.ndarray, chose_a: np.ndarray, decisive: np.ndarray, *,
                  n_boot: int = N_BOOT, seed: int = 0) -> Rate:
    """Share of decisive judgments (a winner picked) that picked slot A; 0.5 is no bias."""
    decisive = np.asarray(decisive, dtype=bool)
    return _rate(np.asarray(prompts)[decisive], np.asarray(chose_a, dtype=float)[decisive],
                 n_boot=n_boot, seed=seed)


def agreement(items: np.ndarray, outcomes: np.ndarray) -> tuple[float | None, int]:
    """Pooled agreement of labelers judging the same item: over every item and every two of
    its judgments, the share with the same answer (4 classes). (share, pairs)."""
    items = dense(items)
    if items.size == 0:
        return None, 0
    counts = np.zeros((int(items.max()) + 1, 4))
    np.add.at(counts, (items, np.asarray(outcomes, dtype=np.int64)), 1)
    same = float((counts * (counts - 1) / 2).sum())
    n = counts.sum(axis=1)
    pairs = float((n * (n - 1) / 2).sum())
    return (same / pairs if pairs else None), int(pairs)


def agreement_per_judgment(items: np.ndarray, outcomes: np.ndarray) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """For each judgment: (other judgments of its item with the same answer, other judgments
    of its item). Summed per labeler, the labeler's agreement with everyone else."""
    items = dense(items)
    outcomes = np.asarray(outcomes, dtype=np.int64)
    if items.size == 0:
        return np.zeros(0), np.zeros(0)
    counts = np.zeros((int(items.max()) + 1, 4))
    np.add.at(counts, (items, outcomes), 1)
    return counts[items, outcomes] - 1, counts[items].sum(axis=1) - 1


# --- Bradley–Terry -----------------------------------------------------------------------


def win_matrices(clusters: np.ndarray, first: np.ndarray, second: np.ndarray,
                 score_first: np.ndarray, n_models: int, n_clusters: int) -> np.ndarray:
    """Per cluster, W[i, j] = (fractional) wins of i over j: (T, M·M), ties split ½/½."""
    w = np.zeros((n_clusters, n_models, n_models))
    s = np.asarray(score_first, dtype=np.float64)
    np.add.at(w, (clusters, first, second), s)
    np.add.at(w, (clusters, second, first), 1.0 - s)
    return w.reshape(n_clusters, n_models * n_models)


def bt_fit(wins: np.ndarray, anchor: int, *, iters: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Bradley–Terry strengths (log scale, anchor = 0) from win matrices (B, M, M) or (M, M),
    by the minorise–maximise updates of Hunter (2004); each version also gets BT_PRIOR
    tied games against the anchor so that an unbeaten version stays finite."""
    w = np.array(wins, dtype=np.float64)
    single = w.ndim == 2
    if single:
        w = w[None]
    m = w.shape[-1]
    prior = np.zeros((m, m))
    prior[:, anchor] += BT_PRIOR / 2
    prior[anchor, :] += BT_PRIOR / 2
    np.fill_diagonal(prior, 0.0)
    w = w + prior
    games = w + np.swapaxes(w, 1, 2)  # (B, M, M)
    won = w.sum(axis=2)  # (B, M)
    p = np.ones(w.shape[:2])
    for _ in range(iters):
        denom = (games / (p[:, :, None] + p[:, None, :])).sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.where(denom > 0, won / denom, p)
        new = new / new[:, anchor:anchor + 1]
        done = np.max(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    theta = np.log(p)
    return theta[0] if single else theta


def bradley_terry(clusters: np.ndarray, first: np.ndarray, second: np.ndarray,
                  score_first: np.ndarray, n_models: int, anchor: int, *,
                  n_boot: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Elo-scaled BT scores (anchor = 1000) and their 95% CIs (M, 2), resampling clusters
    (prompts) with multinomial weights, as Chatbot Arena's bootstrap does per battle."""
    t = dense(clusters)
    n_clusters = int(t.max()) + 1 if t.size else 0
    flat = win_matrices(t, first, second, score_first, n_models, n_clusters)
    point = ELO_ANCHOR + ELO_SCALE * bt_fit(flat.sum(axis=0).reshape(n_models, n_models),
                                            anchor)
    if n_clusters == 0:
        return point, np.full((n_models, 2), np.nan)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=n_boot)
    boot = ELO_ANCHOR + ELO_SCALE * bt_fit(
        (weights @ flat).reshape(n_boot, n_models, n_models), anchor)
    return point, np.quantile(boot, [0.025, 0.975], axis=0).T
