"""From loaded columns (numpy arrays) to the figures of the agreement page; no database.

Rankings arrive as parallel arrays, one entry per ranking. Two rankings are compared when
they belong to the same task and cover the same candidate set (the paper's definition);
each such *comparison* keeps its counts (pairs agreeing, pairs tied by neither), so every
figure below — pooled, per labeler, per pair, per group, per week — is a sum of them.
"""

from dataclasses import dataclass, field

import numpy as np

from app.agreement import metrics

WEEK_S = 7 * 86400
# The Unix epoch was a Thursday; shifting by 3 days puts week boundaries on Mondays.
MONDAY_SHIFT_S = 3 * 86400
MAX_BOOT_CELLS = 5_000_000  # tasks × statistics above this: per-labeler CIs are skipped


@dataclass
class RankingColumns:
    """One entry per ranking; `ranks[i]` is its rank vector over sorted candidate ids."""

    task_id: np.ndarray
    user_id: np.ndarray
    created_s: np.ndarray  # epoch seconds
    set_key: np.ndarray  # hash of the sorted candidate ids
    ranks: list[np.ndarray]
    category: np.ndarray  # object: prompt category or ""
    first_in_top: np.ndarray
    top_size: np.ndarray
    k: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.k = np.array([len(r) for r in self.ranks], dtype=np.int64)


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
        signs = metrics.pair_signs(np.stack([cols.ranks[i] for i in rows]))
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


def grouped_agreement(
    comp: Comparisons, task_idx: np.ndarray, n_tasks: int, masks: dict[str, np.ndarray],
    *, n_boot: int, seed: int,
) -> dict[str, dict]:
    """Pooled agreement, comparisons and bootstrap CI (resampling tasks) per named subset."""
    names = list(masks)
    num = np.zeros((n_tasks, len(names)))
    den = np.zeros((n_tasks, len(names)))
    for g, name in enumerate(names):
        m = masks[name]
        num[:, g] = np.bincount(task_idx[m], weights=comp.agree[m], minlength=n_tasks)
        den[:, g] = np.bincount(task_idx[m], weights=comp.n[m], minlength=n_tasks)
    cis = metrics.bootstrap_ratio_ci(num, den, n_boot=n_boot, seed=seed)
    return {
        name: {"pairwise_agreement": _share(num[:, g].sum(), den[:, g].sum()),
               "n_comparisons": int(den[:, g].sum()), "ci95": _ci(cis[g])}
        for g, name in enumerate(names)
    }


def labeler_agreement(
    comp: Comparisons, ua: np.ndarray, ub: np.ndarray, task_idx: np.ndarray, n_tasks: int,
    n_users: int, *, n_boot: int, seed: int,
) -> dict[str, np.ndarray]:
    """Per labeler (against everyone else) and per labeler pair: sums, τ-b and CIs."""
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
    ci = np.full((n_users, 2), np.nan)
    if n_tasks * n_users <= MAX_BOOT_CELLS and n_tasks:
        flat = np.concatenate([task_idx, task_idx]) * n_users + both_u
        num = np.bincount(flat, weights=agree2, minlength=n_tasks * n_users)
        den = np.bincount(flat, weights=n2, minlength=n_tasks * n_users)
        ci = metrics.bootstrap_ratio_ci(num.reshape(n_tasks, n_users),
                                        den.reshape(n_tasks, n_users),
                                        n_boot=n_boot, seed=seed + 1)
    return {"agree": agree_u, "n": n_u, "ci": ci, "tau_sum": tau_sum, "tau_cnt": tau_cnt,
            "pair_agree": pair_agree, "pair_n": pair_n, "tau": tau}


def week_index(created_s: np.ndarray) -> np.ndarray:
    """Monday-based week number of each epoch-seconds timestamp."""
    return ((np.asarray(created_s, np.int64) + MONDAY_SHIFT_S) // WEEK_S).astype(np.int64)


def week_start_s(week: int) -> int:
    """Epoch seconds of the Monday 00:00 UTC that starts this week number."""
    return int(week) * WEEK_S - MONDAY_SHIFT_S


def weekly_agreement(
    comp: Comparisons, week_of_comparison: np.ndarray, masks: dict[str, np.ndarray],
) -> dict[int, dict[str, tuple[float, int]]]:
    """Per week (of the later ranking of each comparison): pooled agreement per subset."""
    out: dict[int, dict[str, tuple[float, int]]] = {}
    if len(week_of_comparison) == 0:
        return out
    weeks, inv = np.unique(week_of_comparison, return_inverse=True)
    for name, m in masks.items():
        agree = np.bincount(inv[m], weights=comp.agree[m], minlength=len(weeks))
        n = np.bincount(inv[m], weights=comp.n[m], minlength=len(weeks))
        for w, (a, c) in enumerate(zip(agree, n, strict=True)):
            out.setdefault(int(weeks[w]), {})[name] = (_share(a, c), int(c))
    return out


def likert_reliability(units: np.ndarray, likert: np.ndarray) -> dict:
    """Krippendorff's α (ordinal) over outputs rated by two or more labelers."""
    counts = metrics.value_counts(units, likert, metrics.LIKERT_VALUES)
    pairable = int(np.sum(counts.sum(axis=1) >= 2)) if len(counts) else 0
    alpha = metrics.krippendorff_alpha_ordinal(counts) if pairable else float("nan")
    return {"alpha": None if np.isnan(alpha) else alpha, "n_units": pairable,
            "n_ratings": int(len(likert))}


def flag_reliability(
    unit_ids: np.ndarray, raters: np.ndarray, flag_units: np.ndarray, flag_idx: np.ndarray,
    flags: tuple[str, ...],
) -> list[dict]:
    """Fleiss' κ per flag over outputs rated by two or more labelers.

    unit_ids/raters: each output and how many ratings it has; flag_units/flag_idx: one entry
    per (rating, flag it set).
    """
    order = np.argsort(unit_ids)
    unit_ids, raters = np.asarray(unit_ids)[order], np.asarray(raters, float)[order]
    yes = np.zeros((len(unit_ids), len(flags)))
    if len(flag_units) and len(unit_ids):
        pos = np.clip(np.searchsorted(unit_ids, flag_units), 0, len(unit_ids) - 1)
        known = unit_ids[pos] == flag_units
        np.add.at(yes, (pos[known], np.asarray(flag_idx)[known]), 1)
    keep = raters >= 2
    out = []
    for f, flag in enumerate(flags):
        kappa = metrics.binary_fleiss_kappa(raters[keep], yes[keep, f]) if keep.any() else np.nan
        out.append({"flag": flag, "kappa": None if np.isnan(kappa) else float(kappa),
                    "n_units": int(keep.sum()), "n_flagged": int(yes[keep, f].sum())})
    return out
