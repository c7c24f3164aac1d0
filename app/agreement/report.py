"""Assembling the report body (headline, per labeler, pairs, weekly trends) from columns."""

from datetime import UTC, datetime
from typing import Any

import numpy as np

from app import metrics
from app.agreement import compute
from app.agreement.compute import Comparisons, RankingColumns
from app.agreement.loading import UserInfo


def _f(value: Any) -> float | None:
    """A JSON-safe float: None for NaN or missing."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _user_index(users: UserInfo, user_id: np.ndarray) -> np.ndarray:
    # Users are loaded sorted by id and include everyone who labeled in the group.
    return np.searchsorted(users.ids, user_id)


def _medians(uidx: np.ndarray, values: np.ndarray, n_users: int) -> np.ndarray:
    out = np.full(n_users, np.nan)
    if len(uidx) == 0:
        return out
    order = np.argsort(uidx, kind="stable")
    bounds = np.searchsorted(uidx[order], np.arange(n_users + 1))
    for u in range(n_users):
        if bounds[u + 1] > bounds[u]:
            out[u] = np.median(values[order[bounds[u]:bounds[u + 1]]])
    return out


def labeler_basics(
    *, users: UserInfo, uidx: np.ndarray, seconds: np.ndarray, gold_ok: np.ndarray,
    gold_n: np.ndarray, skips: dict[tuple[int, str], int],
) -> list[dict[str, Any]]:
    """Per labeler: tasks, throughput, median time, skip rate and gold accuracy."""
    n_users = len(users.ids)
    tasks = np.bincount(uidx, minlength=n_users)
    secs = np.bincount(uidx, weights=seconds, minlength=n_users)
    med = _medians(uidx, seconds, n_users)
    g_ok = np.bincount(uidx, weights=gold_ok, minlength=n_users)
    g_n = np.bincount(uidx, weights=gold_n, minlength=n_users)
    rows = []
    for u, uid in enumerate(users.ids.tolist()):
        skipped = skips.get((uid, "skipped"), 0)
        finished = skipped + skips.get((uid, "submitted"), 0)
        rows.append({
            "user_id": uid, "email": users.email[u], "name": users.name[u],
            "held_out": bool(users.held_out[u]), "n_tasks": int(tasks[u]),
            # Throughput per hour of recorded labeling time (seconds_spent), not wall time.
            "tasks_per_hour": _f(3600 * tasks[u] / secs[u]) if secs[u] > 0 else None,
            "median_seconds": _f(med[u]),
            "skip_rate": skipped / finished if finished else None, "n_skipped": skipped,
            "gold_accuracy": _f(g_ok[u] / g_n[u]) if g_n[u] else None, "n_gold": int(g_n[u]),
        })
    return rows


def _shown(rows: list[dict], users: UserInfo) -> list[dict]:
    """Labelers, plus staff only when they labeled something themselves."""
    return [r for r, lab in zip(rows, users.is_labeler.tolist(), strict=True)
            if lab or r["n_tasks"] or r["n_skipped"]]


def _gold_rank_counts(cols: RankingColumns, is_gold: np.ndarray,
                      answers: dict[int, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per ranking: (gold pairs ordered as the known answer, gold pairs); 0 off gold."""
    ok, n = np.zeros(len(cols.k)), np.zeros(len(cols.k))
    rows, gold = [], []
    for i in np.flatnonzero(is_gold).tolist():
        answer = answers.get(int(cols.task_id[i]))
        if answer:
            rows.append(i)
            gold.append(metrics.rank_vector(answer))
    if not rows:
        return ok, n
    idx = np.array(rows, np.int64)
    k = np.array([len(ids) for ids, _ in gold], np.int64)
    gold_ids = compute.padded(np.concatenate([np.array(ids, np.int64) for ids, _ in gold]), k)
    gold_ranks = compute.padded(np.concatenate([r.astype(np.int64) for _, r in gold]), k)
    # Only where the answer covers exactly this ranking's candidates.
    same = (compute.set_keys(gold_ids, k) == cols.set_key[idx]) & (k == cols.k[idx])
    for size in np.unique(k[same]).tolist():
        sel = np.flatnonzero(same & (k == size))
        s = metrics.pair_signs(cols.ranks[idx[sel], :size])
        g = metrics.pair_signs(gold_ranks[sel, :size])
        strict = g != 0
        ok[idx[sel]] = ((s == g) & strict).sum(axis=1)
        n[idx[sel]] = strict.sum(axis=1)
    return ok, n


def _comparison_masks(comp: Comparisons, held_a: np.ndarray, held_b: np.ndarray) -> dict:
    return {"all": np.ones(len(comp.a), bool), "training": ~held_a & ~held_b,
            "held_out": held_a & held_b}


def rank_report(
    *, cols: RankingColumns, seconds: np.ndarray, is_gold: np.ndarray, users: UserInfo,
    gold_answers: dict[int, Any], skips: dict, n_boot: int, seed: int,
) -> dict[str, Any]:
    """Pairwise agreement (pooled, groups, categories, labelers, pairs, weeks) and quality."""
    n_users = len(users.ids)
    uidx = _user_index(users, cols.user_id)
    comp = compute.compare(cols)
    ua, ub = uidx[comp.a], uidx[comp.b]
    tasks, task_idx = np.unique(cols.task_id[comp.a], return_inverse=True)
    masks = _comparison_masks(comp, users.held_out[ua], users.held_out[ub])
    cats = cols.category[comp.a]
    cat_masks = {c: cats == c for c in sorted(set(cats.tolist()))}
    lab: dict[str, Any] = compute.labeler_agreement(comp, ua, ub, task_idx, len(tasks), n_users)
    lab["ci"] = _bootstrap_all(comp, task_idx, len(tasks), masks, cat_masks, lab, n_users,
                               n_boot=n_boot, seed=seed)
    headline, by_cat = lab.pop("headline"), lab.pop("by_cat")
    gold_ok, gold_n = _gold_rank_counts(cols, is_gold, gold_answers)
    rows = labeler_basics(users=users, uidx=uidx, seconds=seconds, gold_ok=gold_ok,
                          gold_n=gold_n, skips=skips)
    _add_agreement_columns(rows, lab, cols, uidx)
    tau = lab["tau"]
    return {
        **headline["all"],
        "kendall_tau_b": _f(np.nanmean(tau)) if np.any(~np.isnan(tau)) else None,
        "n_rankings": int(len(cols.k)), "n_tasks_compared": int(len(tasks)),
        "n_labeler_pairs": int(len(comp.a)),
        "by_group": {"training": headline["training"], "held_out": headline["held_out"]},
        "by_category": [{"category": c or "uncategorised", **v} for c, v in by_cat.items()],
        "gold_accuracy": _f(gold_ok.sum() / gold_n.sum()) if gold_n.sum() else None,
        "n_gold": int(gold_n.sum()),
        "position_bias": metrics.position_bias(cols.first_in_top, cols.top_size, cols.k),
        "per_labeler": _shown(rows, users),
        "pairs": _pair_cells(users, lab),
        "trends": _rank_trends(cols, comp, masks, gold_ok, gold_n),
    }


def _bootstrap_all(
    comp: Comparisons, task_idx: np.ndarray, n_tasks: int, masks: dict, cat_masks: dict,
    lab: dict, n_users: int, *, n_boot: int, seed: int,
) -> np.ndarray:
    """One set of task resamples for every CI: groups, categories and labelers.

    Fills lab["headline"] and lab["by_cat"]; returns the per-labeler CIs (U, 2).
    """
    num_g, den_g = compute.task_sums(comp, task_idx, n_tasks, masks)
    num_c, den_c = compute.task_sums(comp, task_idx, n_tasks, cat_masks)
    parts_num, parts_den = [num_g, num_c], [den_g, den_c]
    if lab["num_t"] is not None:
        parts_num.append(lab["num_t"])
        parts_den.append(lab["den_t"])
    cis = metrics.bootstrap_ratio_ci(np.hstack(parts_num), np.hstack(parts_den),
                                     n_boot=n_boot, seed=seed)
    g, c = num_g.shape[1], num_c.shape[1]
    lab["headline"] = compute.shares(list(masks), num_g, den_g, cis[:g])
    lab["by_cat"] = compute.shares(list(cat_masks), num_c, den_c, cis[g:g + c])
    if lab["num_t"] is None:
        return np.full((n_users, 2), np.nan)
    return cis[g + c:]


def _add_agreement_columns(rows: list[dict], lab: dict, cols: RankingColumns,
                           uidx: np.ndarray) -> None:
    n_users = len(rows)
    share = _ratio(lab["agree"], lab["n"])
    tau = _ratio(lab["tau_sum"], lab["tau_cnt"].astype(float))
    top = np.bincount(uidx, weights=cols.first_in_top.astype(float), minlength=n_users)
    chance = np.bincount(uidx, weights=cols.top_size / np.maximum(cols.k, 1), minlength=n_users)
    shown = np.bincount(uidx, minlength=n_users)
    for u, row in enumerate(rows):
        ci = lab["ci"][u]
        row.update({
            "pairwise_agreement": _f(share[u]), "n_comparisons": int(lab["n"][u]),
            "ci95": None if np.isnan(ci).any() else [float(ci[0]), float(ci[1])],
            "kendall_tau_b": _f(tau[u]),
            "position_bias_observed": _f(top[u] / shown[u]) if shown[u] else None,
            "position_bias_expected": _f(chance[u] / shown[u]) if shown[u] else None,
            "position_bias_ratio": _f(top[u] / chance[u]) if chance[u] else None,
        })


def _pair_cells(users: UserInfo, lab: dict) -> list[dict[str, Any]]:
    n_users = len(users.ids)
    cells = np.flatnonzero(lab["pair_n"] > 0)
    out = []
    for c in cells.tolist():
        a, b = divmod(c, n_users)
        out.append({"user_a": int(users.ids[a]), "user_b": int(users.ids[b]),
                    "pairwise_agreement": float(lab["pair_agree"][c] / lab["pair_n"][c]),
                    "n_comparisons": int(lab["pair_n"][c])})
    return out


def _week_label(week: int) -> str:
    return datetime.fromtimestamp(compute.week_start_s(week), UTC).date().isoformat()


def _rank_trends(cols: RankingColumns, comp: Comparisons, masks: dict,
                 gold_ok: np.ndarray, gold_n: np.ndarray) -> list[dict[str, Any]]:
    week_cmp = compute.week_index(np.maximum(cols.created_s[comp.a], cols.created_s[comp.b]))
    agreement = compute.weekly_agreement(comp, week_cmp, masks)
    week_rank = compute.week_index(cols.created_s)
    weeks = sorted(set(week_rank.tolist()) | set(agreement))
    out = []
    for w in weeks:
        here = week_rank == w
        g_n = gold_n[here].sum()
        row: dict[str, Any] = {"week": _week_label(w), "n_rankings": int(here.sum()),
                               "gold_accuracy": _f(gold_ok[here].sum() / g_n) if g_n else None}
        for name in ("all", "training", "held_out"):
            share, n = agreement.get(w, {}).get(name, (None, 0))
            key = "pairwise_agreement" if name == "all" else name
            row[key] = share
            row["n_comparisons" if name == "all" else f"n_{name}"] = n
        out.append(row)
    return out


def rate_report(
    *, ratings: dict[str, np.ndarray], users: UserInfo, gold_answers: dict[int, Any],
    skips: dict, tolerance: int,
) -> dict[str, Any]:
    """Rate tasks: no pairwise preferences, so throughput, skips, gold and weekly volume."""
    uidx = _user_index(users, ratings["user_id"])
    gold_n = ratings["gold"].astype(float)
    expected = np.array([_gold_likert(gold_answers.get(int(t))) for t in ratings["task_id"]],
                        dtype=float)
    gold_n[np.isnan(expected)] = 0
    gold_ok = (np.abs(ratings["likert"] - expected) <= tolerance) & (gold_n > 0)
    rows = labeler_basics(users=users, uidx=uidx, seconds=ratings["seconds"],
                          gold_ok=gold_ok.astype(float), gold_n=gold_n, skips=skips)
    for row in rows:
        row.update({"pairwise_agreement": None, "n_comparisons": 0, "ci95": None,
                    "kendall_tau_b": None, "position_bias_observed": None,
                    "position_bias_expected": None, "position_bias_ratio": None})
    week = compute.week_index(ratings["created_s"])
    trends = []
    for w in sorted(set(week.tolist())):
        here = week == w
        g = gold_n[here].sum()
        trends.append({"week": _week_label(w), "n_ratings": int(here.sum()),
                       "gold_accuracy": _f(gold_ok[here].sum() / g) if g else None,
                       "pairwise_agreement": None, "n_comparisons": 0})
    return {
        "pairwise_agreement": None, "n_comparisons": 0, "ci95": None, "kendall_tau_b": None,
        "n_ratings": int(len(uidx)), "by_group": {}, "by_category": [],
        "gold_accuracy": _f(gold_ok.sum() / gold_n.sum()) if gold_n.sum() else None,
        "n_gold": int(gold_n.sum()), "position_bias": None,
        "per_labeler": _shown(rows, users), "pairs": [], "trends": trends,
    }


def _gold_likert(answer: Any) -> float:
    if isinstance(answer, dict) and isinstance(answer.get("likert"), int):
        return float(answer["likert"])
    return float("nan")
