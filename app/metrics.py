"""Agreement and labeler-quality metrics as pure numpy functions (no database).

A ranking of K candidates is held as a rank vector over the candidates in a fixed order
(sorted candidate ids): entry i is the index of the group candidate i is in, 0 = best.
Candidates in the same group are tied. Everything pairwise works on *pair signs*: for
the K(K-1)/2 candidate pairs (i < j), +1 if i is ranked above j, -1 if below, 0 if tied.
"""

from collections.abc import Sequence
from functools import lru_cache
from math import sqrt

import numpy as np

LIKERT_VALUES = np.arange(1, 8)


def rank_vector(groups: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], np.ndarray]:
    """(sorted candidate ids, group index of each) for a ranking given as groups best first."""
    position = {cid: g for g, group in enumerate(groups) for cid in group}
    ids = tuple(sorted(position))
    return ids, np.array([position[c] for c in ids], dtype=np.int8)


@lru_cache(maxsize=16)
def _pair_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(k, 1)


def pair_signs(ranks: np.ndarray) -> np.ndarray:
    """Pair signs of one rank vector (K,) or many (N, K): shape (P,) or (N, P), int8.

    +1 when the first candidate of the pair is preferred, -1 when the second is, 0 if tied.
    """
    ranks = np.asarray(ranks)
    i, j = _pair_index(ranks.shape[-1])
    return np.sign(ranks[..., j].astype(np.int16) - ranks[..., i]).astype(np.int8)


def agreement_counts(signs_a: np.ndarray, signs_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (pairs ordered the same way, pairs tied by neither) between two sign arrays."""
    prod = signs_a.astype(np.int8) * signs_b.astype(np.int8)
    return (prod > 0).sum(axis=-1), (prod != 0).sum(axis=-1)


def pairwise_agreement(ranks_a: np.ndarray, ranks_b: np.ndarray) -> tuple[float, int]:
    """The paper's agreement of two rankings of the same candidates: (share, n pairs).

    Share of candidate pairs both order the same way, among pairs tied by neither;
    NaN when no such pair exists.
    """
    agree, n = agreement_counts(pair_signs(ranks_a), pair_signs(ranks_b))
    return (float(agree) / float(n) if n else float("nan")), int(n)


def kendall_tau_b(ranks_a: np.ndarray, ranks_b: np.ndarray) -> float:
    """Kendall's τ-b of two rankings of the same set, ties allowed.

    τ-b = (concordant − discordant) / sqrt((P − ties_a)(P − ties_b)); NaN if either ranking
    ties everything.
    """
    sa, sb = pair_signs(ranks_a).astype(np.int32), pair_signs(ranks_b).astype(np.int32)
    denom = sqrt(float(np.count_nonzero(sa)) * float(np.count_nonzero(sb)))
    return float(np.sum(sa * sb)) / denom if denom else float("nan")


def gold_counts(ranks: np.ndarray, gold_ranks: np.ndarray) -> tuple[int, int]:
    """(gold pairs ordered as the known answer, gold pairs): pairs the gold answer does not tie.

    A tie by the labeler on a pair the gold answer orders counts as wrong, so that tying
    everything cannot score well.
    """
    s, g = pair_signs(ranks), pair_signs(gold_ranks)
    strict = g != 0
    return int(np.sum(s[strict] == g[strict])), int(np.sum(strict))


def position_bias(first_in_top: np.ndarray, top_size: np.ndarray, k: np.ndarray) -> dict:
    """How often the output shown first was ranked first, against chance.

    first_in_top: bool per ranking, the first-shown candidate is in the top group;
    chance is |top group| / K per ranking (1/K without ties). Ratio 1 means no bias.
    """
    n = int(np.size(first_in_top))
    if n == 0:
        return {"observed": None, "expected": None, "ratio": None, "n": 0}
    observed = float(np.mean(first_in_top))
    expected = float(np.mean(np.asarray(top_size, float) / np.asarray(k, float)))
    return {"observed": observed, "expected": expected, "ratio": observed / expected, "n": n}


def bootstrap_ratio_ci(
    num: np.ndarray, den: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
    level: float = 0.95, chunk: int = 250,
) -> np.ndarray:
    """Percentile bootstrap CIs of ratios Σnum/Σden, resampling clusters (tasks).

    num, den: (T, G) per-cluster sums for G statistics (or (T,) for one). Every statistic
    shares the same resamples of the T clusters. Returns (G, 2) [lo, hi] (NaN when a
    statistic has nothing to compare). Seeded, so the same data gives the same interval.
    """
    # float32 halves the memory traffic; per-task sums are small integers, exact in it.
    num2 = np.asarray(num, np.float32)
    den2 = np.asarray(den, np.float32)
    if num2.ndim == 1:
        num2, den2 = num2[:, None], den2[:, None]
    t, g = num2.shape
    out = np.full((g, 2), np.nan)
    if t == 0:
        return out
    rng = np.random.default_rng(seed)
    ratios = np.empty((n_boot, g))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        # Resample counts per task; int32 draws are ~3× faster than the default int64.
        draws = rng.integers(0, t, size=(b, t), dtype=np.int32)
        # One bincount per resample: its T counters stay in cache, unlike one flat
        # bincount over b·T counters (3–5× slower from cache misses alone).
        weights = np.empty((b, t), np.float32)
        for i in range(b):
            weights[i] = np.bincount(draws[i], minlength=t)
        with np.errstate(invalid="ignore", divide="ignore"):
            # Sums are exact integers in float32; divide in float64.
            ratios[start:start + b] = ((weights @ num2).astype(np.float64)
                                       / (weights @ den2).astype(np.float64))
    alpha = (1 - level) / 2
    has = den2.sum(axis=0) > 0
    if has.any():
        qs = np.nanquantile(ratios[:, has], [alpha, 1 - alpha], axis=0)
        out[has] = qs.T
    return out


def krippendorff_alpha_ordinal(counts: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Krippendorff's α with the ordinal metric, from value counts per unit.

    counts: (U, C) how many coders gave unit u the c-th value (values in order); weights:
    how many units have each row (default 1), so identical rows can be sent once. Units
    with fewer than two values are not pairable and are dropped. α = 1 − D_o / D_e with the
    ordinal distance δ²(c, k) = (Σ_{g=c..k} n_g − (n_c + n_k)/2)². NaN if undefined.
    """
    counts = np.asarray(counts, np.float64)
    w = np.ones(len(counts)) if weights is None else np.asarray(weights, np.float64)
    m = counts.sum(axis=1)
    counts, m, w = counts[m >= 2], m[m >= 2], w[m >= 2]
    if len(counts) == 0:
        return float("nan")
    scaled = counts * (w / (m - 1))[:, None]
    coincidence = counts.T @ scaled - np.diag(scaled.sum(axis=0))  # (C, C)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    cum = np.concatenate([[0.0], np.cumsum(n_c)])
    lo = np.minimum.outer(np.arange(len(n_c)), np.arange(len(n_c)))
    hi = np.maximum.outer(np.arange(len(n_c)), np.arange(len(n_c)))
    delta2 = (cum[hi + 1] - cum[lo] - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    expected = float(np.sum(np.outer(n_c, n_c) * delta2))
    if expected == 0:
        return float("nan")
    return 1.0 - (n - 1) * float(np.sum(coincidence * delta2)) / expected


def value_counts(units: np.ndarray, values: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """(U, C) counts of each value of `domain` per distinct unit id."""
    _, unit_idx = np.unique(np.asarray(units), return_inverse=True)
    value_idx = np.searchsorted(domain, np.asarray(values))
    out = np.zeros((unit_idx.max() + 1 if len(unit_idx) else 0, len(domain)))
    np.add.at(out, (unit_idx, value_idx), 1)
    return out


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's κ of two raters' labels on the same items: (p_o − p_e) / (1 − p_e)."""
    a, b = np.asarray(a), np.asarray(b)  # type: ignore[assignment]
    if len(a) == 0:
        return float("nan")
    labels = np.union1d(a, b)
    p_o = float(np.mean(a == b))
    p_e = float(sum(np.mean(a == c) * np.mean(b == c) for c in labels))
    return (p_o - p_e) / (1 - p_e) if p_e < 1 else float("nan")


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' κ from (items, categories) rater counts; items may have different numbers of
    raters (≥ 2 each; others are dropped). With a constant number it is Fleiss (1971)."""
    counts = np.asarray(counts, np.float64)
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if len(counts) == 0:
        return float("nan")
    p_i = ((counts**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_j = counts.sum(axis=0) / n_i.sum()
    p_e = float(np.sum(p_j**2))
    return (float(np.mean(p_i)) - p_e) / (1 - p_e) if p_e < 1 else float("nan")


def binary_fleiss_kappa(raters: np.ndarray, positives: np.ndarray) -> float:
    """Fleiss' κ of a yes/no label (e.g. one flag): raters and yes-votes per item."""
    raters, positives = np.asarray(raters, float), np.asarray(positives, float)
    return fleiss_kappa(np.column_stack([raters - positives, positives]))
