"""From loaded columns (numpy arrays) to the figures of the agreement page; no database.

Rankings arrive as parallel arrays, one entry per ranking. Two rankings are compared when
they belong to the same task and cover the same candidate set (the paper's definition);
each such *comparison* keeps its counts (pairs agreeing, pairs tied by neither), so every
figure below — pooled, per labeler, per pair, per group, per week — is a sum of them.
"""

from dataclasses import dataclass, field

import numpy as np

from app import metrics

WEEK_S = 7 * 86400
# The Unix epoch was a Thursday; shifting by 3 days puts week boundaries on Mondays.
MONDAY_SHIFT_S = 3 * 86400
MAX_BOOT_CELLS = 5_000_000  # tasks × statistics above this: per-labeler CIs are skipped


@dataclass
class RankingColumns:
    """One entry per ranking; `ranks[i, :k[i]]` is its rank vector over sorted candidate ids.

    `ranks` may also be given as a list of rank vectors; it is padded to an (N, max K)
    matrix (padding -1). `k` counts each row's candidates.
    """

    task_id: np.ndarray
    user_id: np.ndarray
    created_s: np.ndarray  # epoch seconds
    set_key: np.ndarray  # set_keys() of the sorted candidate ids
    ranks: np.ndarray  # (N, max K) group index per candidate, -1 past K
    category: np.ndarray  # object: prompt category or ""
    first_in_top: np.ndarray
    top_size: np.ndarray
    k: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.ranks, np.ndarray) or self.ranks.ndim != 2:
            lengths = np.array([len(r) for r in self.ranks], dtype=np.int64)
            flat = (np.concatenate([np.asarray(r, np.int64) for r in self.ranks])
                    if len(lengths) else np.zeros(0, np.int64))
            self.ranks = padded(flat, lengths)
        self.k = np.count_nonzero(self.ranks >= 0, axis=1).astype(np.int64)


def padded(flat: np.ndarray, k: np.ndarray, fill: int = -1) -> np.ndarray:
    """Row i of the result holds flat's next k[i] values, then `fill`: (N, max K)."""
    n = len(k)
    out = np.full((n, int(k.max()) if n else 0), fill, dtype=np.int64)
    if len(flat):
        row = np.repeat(np.arange(n), k)
        col = np.arange(len(flat)) - np.repeat(np.cumsum(k) - k, k)
        out[row, col] = flat
    return out


_MIX = np.uint64(0x9E3779B97F4A7C15)


def set_keys(ids: np.ndarray, k: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of (N, max K) sorted candidate ids, k[i] of them in row i.

    Equal sets give equal keys; two different sets of one task collide with probability
    about 2^-64 (only rankings of the same task are ever compared by key).
    """
    ids = np.asarray(ids, np.int64)
    key = np.asarray(k, np.uint64) * _MIX
    with np.errstate(over="ignore"):
        for j in range(ids.shape[1]):
            h = (ids[:, j].astype(np.uint64) + np.uint64(j + 1)) * _MIX
            h ^= h >> np.uint64(29)
            key = np.where(j < k, (key ^ h) * np.uint64(0xBF58476D1CE4E5B9), key)
    return key.view(np.int64)


@dataclass
class Comparisons:
    """Every two rankings of the same candidate set: indices into RankingColumns and counts."""

    a: np.ndarray
    b: np.ndarray
    agree: np.ndarray
    n: np.ndarray
    tau_num: np.ndarray  # concordant − discordant
    tau_den: np.ndarray  # sqrt of untied pairs of a × untied pairs of b


def _empty_comparisons() -> Comparisons:
    z = np.zeros(0, dtype=np.int64)
    return Comparisons(z, z, z, z, z, z.astype(float))


def ranking_pairs(task_id: np.ndarray, set_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a < b in sorted order) of rankings sharing task and candidate set."""
    order = np.lexsort((set_key, task_id))
    t, s = task_id[order], set_key[order]
    a_parts, b_parts = [], []
    d = 1
    while d < len(order):
        same = (t[:-d] == t[d:]) & (s[:-d] == s[d:])
        if not same.any():
            break
        a_parts.append(order[:-d][same])
        b_parts.append(order[d:][same])
        d += 1
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a_parts), np.concatenate(b_parts)


def compare(cols: RankingColumns) -> Comparisons:
    """Agreement counts of every comparison, vectorised per K."""
    a, b = ranking_pairs(cols.task_id, cols.set_key)
    if len(a) == 0:
        return _empty_comparisons()
    agree = np.zeros(len(a), np.int64)
    n = np.zeros(len(a), np.int64)
    untied = np.zeros(len(cols.k), np.int64)
    for k in np.unique(cols.k):
        rows = np.flatnonzero(cols.k == k)
        signs = metrics.pair_signs(cols.ranks[rows, :k].astype(np.int16))
        untied[rows] = np.count_nonzero(signs, axis=1)
        local = np.full(len(cols.k), -1, np.int64)
        local[rows] = np.arange(len(rows))
        sel = np.flatnonzero(cols.k[a] == k)
        agree[sel], n[sel] = metrics.agreement_counts(signs[local[a[sel]]], signs[local[b[sel]]])
    # Pairs untied by both split into agreeing and disagreeing, so C − D = 2·agree − n.
    return Comparisons(a, b, agree, n, 2 * agree - n,
                       np.sqrt(untied[a].astype(float) * untied[b]))


def _share(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _ci(pair: np.ndarray) -> list[float] | None:
    return None if np.isnan(pair).any() else [float(pair[0]), float(pair[1])]


def task_sums(
    comp: Comparisons, task_idx: np.ndarray, n_tasks: int, masks: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Per task (T, G): agreeing pairs and compared pairs of each named subset."""
    num = np.zeros((n_tasks, len(masks)))
    den = np.zeros((n_tasks, len(masks)))
    for g, m in enumerate(masks.values()):
        num[:, g] = np.bincount(task_idx[m], weights=comp.agree[m], minlength=n_tasks)
        den[:, g] = np.bincount(task_idx[m], weights=comp.n[m], minlength=n_tasks)
    return num, den


def shares(names: list[str], num: np.ndarray, den: np.ndarray, cis: np.ndarray) -> dict:
    """{name: pooled agreement, compared pairs, CI} from per-task sums and their CIs."""
    return {
        name: {"pairwise_agreement": _share(num[:, g].sum(), den[:, g].sum()),
               "n_comparisons": int(den[:, g].sum()), "ci95": _ci(cis[g])}
        for g, name in enumerate(names)
    }


def labeler_agreement(
    comp: Comparisons, ua: np.ndarray, ub: np.ndarray, task_idx: np.ndarray, n_tasks: int,
    n_users: int,
) -> dict[str, np.ndarray | None]:
    """Per labeler (against everyone else) and per labeler pair: sums and τ-b.

    Also the per-task sums of each labeler (T, U) for the bootstrap, unless that matrix
    would be too large.
    """
    both_u = np.concatenate([ua, ub])
    agree2, n2 = np.tile(comp.agree, 2), np.tile(comp.n, 2)
    agree_u = np.bincount(both_u, weights=agree2, minlength=n_users)
    n_u = np.bincount(both_u, weights=n2, minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(comp.tau_den > 0, comp.tau_num / comp.tau_den, np.nan)
    ok = ~np.isnan(tau)
    tau_sum = np.bincount(np.concatenate([ua[ok], ub[ok]]), weights=np.tile(tau[ok], 2),
                          minlength=n_users)
    tau_cnt = np.bincount(np.concatenate([ua[ok], ub[ok]]), minlength=n_users)
    cell = np.minimum(ua, ub) * n_users + np.maximum(ua, ub)
    pair_agree = np.bincount(cell, weights=comp.agree, minlength=n_users * n_users)
    pair_n = np.bincount(cell, weights=comp.n, minlength=n_users * n_users)
    num_t = den_t = None
    if 0 < n_tasks * n_users <= MAX_BOOT_CELLS:
        flat = np.concatenate([task_idx, task_idx]) * n_users + both_u
        num_t = np.bincount(flat, weights=agree2, minlength=n_tasks * n_users).reshape(
            n_tasks, n_users)
        den_t = np.bincount(flat, weights=n2, minlength=n_tasks * n_users).reshape(
            n_tasks, n_users)
    return {"agree": agree_u, "n": n_u, "tau_sum": tau_sum, "tau_cnt": tau_cnt,
            "pair_agree": pair_agree, "pair_n": pair_n, "tau": tau,
            "num_t": num_t, "den_t": den_t}


def week_index(created_s: np.ndarray) -> np.ndarray:
    """Monday-based week number of each epoch-seconds timestamp."""
    return ((np.asarray(created_s, np.int64) + MONDAY_SHIFT_S) // WEEK_S).astype(np.int64)


def week_start_s(week: int) -> int:
    """Epoch seconds of the Monday 00:00 UTC that starts this week number."""
    return int(week) * WEEK_S - MONDAY_SHIFT_S


def weekly_agreement(
    comp: Comparisons, week_of_comparison: np.ndarray, masks: dict[str, np.ndarray],
) -> dict[int, dict[str, tuple[float | None, int]]]:
    """Per week (of the later ranking of each comparison): pooled agreement per subset."""
    out: dict[int, dict[str, tuple[float | None, int]]] = {}
    if len(week_of_comparison) == 0:
        return out
    weeks, inv = np.unique(week_of_comparison, return_inverse=True)
    for name, m in masks.items():
        agree = np.bincount(inv[m], weights=comp.agree[m], minlength=len(weeks))
        n = np.bincount(inv[m], weights=comp.n[m], minlength=len(weeks))
        for w, (a, c) in enumerate(zip(agree, n, strict=True)):
            out.setdefault(int(weeks[w]), {})[name] = (_share(a, c), int(c))
    return out


def likert_reliability(patterns: np.ndarray, multiplicity: np.ndarray) -> dict:
    """Krippendorff's α (ordinal) over outputs rated by two or more labelers.

    patterns: (P, 7) Likert value counts of an output; multiplicity: outputs per pattern.
    """
    raters = patterns.sum(axis=1) if len(patterns) else np.zeros(0)
    pairable = int(multiplicity[raters >= 2].sum()) if len(patterns) else 0
    alpha = (metrics.krippendorff_alpha_ordinal(patterns, multiplicity) if pairable
             else float("nan"))
    return {"alpha": None if np.isnan(alpha) else float(alpha), "n_units": pairable,
            "n_ratings": int((raters * multiplicity).sum()) if len(patterns) else 0}


def flag_reliability(
    patterns: np.ndarray, multiplicity: np.ndarray, flag_n: np.ndarray, flag_yes: np.ndarray,
    flags: tuple[str, ...],
) -> list[dict]:
    """Fleiss' κ per flag over outputs rated by two or more labelers.

    Only outputs with a flag are sent individually (flag_n raters, flag_yes (U, F) votes);
    every other output agrees perfectly on "not set" (P_i = 1), so the rater-count
    distribution from the Likert patterns is enough for them.
    """
    raters = patterns.sum(axis=1) if len(patterns) else np.zeros(0)
    pairable = raters >= 2
    n_units = float(multiplicity[pairable].sum()) if len(patterns) else 0.0
    total = float((raters * multiplicity)[pairable].sum()) if len(patterns) else 0.0
    keep = flag_n >= 2
    n, yes = flag_n[keep].astype(float), flag_yes[keep]
    out = []
    for f, flag in enumerate(flags):
        x = yes[:, f]
        p_i = (x**2 + (n - x) ** 2 - n) / (n * (n - 1))
        kappa = float("nan")
        if n_units and total:
            mean_p = (n_units - len(n) + p_i.sum()) / n_units
            p = x.sum() / total
            p_e = p**2 + (1 - p) ** 2
            kappa = (mean_p - p_e) / (1 - p_e) if p_e < 1 else float("nan")
        out.append({"flag": flag, "kappa": None if np.isnan(kappa) else float(kappa),
                    "n_units": int(n_units), "n_flagged": int(x.sum())})
    return out
