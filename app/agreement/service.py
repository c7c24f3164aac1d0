"""Agreement and labeler quality for a set of filters: load once, compute, cache.

Every figure of the page, the JSON API and the CSV comes from one report per filter set.
Reports are cached in-process, keyed by the filters and a fingerprint of the data
(`loading.data_version`), so a new ranking, rating, skip or held-out change recomputes.
"""

import csv
import io
import threading
import time as time_module
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.agreement import compute, loading
from app.agreement.loading import Filters
from app.agreement.report import rank_report, rate_report
from app.agreement.schemas import AgreementQuery
from app.errors import DomainError
from app.labeling.models import FLAGS
from app.queue.models import TaskKind

# The paper's labeler-labeler agreement (PAPER.md): training and held-out labelers.
REFERENCE = {"training": 0.726, "held_out": 0.773}
GROUPS = ("all", "training", "held_out")
KINDS = (TaskKind.rank, TaskKind.rate)
N_BOOT = 1000
SEED = 0
CACHE_SIZE = 16
# A rate-task gold answer counts as matched within this many Likert points.
GOLD_LIKERT_TOLERANCE = 1

# Deletions (a user or task removed) do not move the fingerprint; the TTL bounds staleness.
CACHE_TTL_S = 600.0

_cache: OrderedDict[tuple, tuple[float, dict]] = OrderedDict()
_cache_lock = threading.Lock()


class BadFilters(DomainError, ValueError):
    """Filters that cannot select anything sensible (e.g. since after until)."""

    status = 422


def _as_utc(value: date | datetime | None, *, end: bool) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    # A bare date means the whole day: `until` includes it.
    return datetime.combine(value + timedelta(days=1) if end else value, time(), tzinfo=UTC)


def make_filters(
    *, kind: str = "rank", since: date | datetime | None = None,
    until: date | datetime | None = None, group: str = "all",
) -> Filters:
    """Validated filters; dates are whole UTC days, `until` inclusive of its day."""
    if kind not in {k.value for k in KINDS}:
        raise BadFilters(f"kind must be one of {', '.join(k.value for k in KINDS)}")
    if group not in GROUPS:
        raise BadFilters(f"group must be one of {', '.join(GROUPS)}")
    lo, hi = _as_utc(since, end=False), _as_utc(until, end=True)
    if lo is not None and hi is not None and lo >= hi:
        raise BadFilters("'since' must be before 'until'")
    return Filters(kind=TaskKind(kind), since=lo, until=hi, group=group)


def filters_for(*, query: AgreementQuery) -> Filters:
    """The validated filters a page's, a CSV's or an API call's query string asks for."""
    return make_filters(**query.model_dump())


def clear_cache() -> None:
    """Forget every cached report."""
    with _cache_lock:
        _cache.clear()


def report(*, db: Session, filters: Filters) -> dict[str, Any]:
    """The whole agreement report for these filters (cached until the data changes)."""
    key = (filters, loading.data_version(db))
    now = time_module.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            _cache.move_to_end(key)
            return hit[1]
    built = build_report(db=db, filters=filters)
    with _cache_lock:
        _cache[key] = (now, built)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return built


def summary(*, db: Session, filters: Filters) -> dict[str, Any]:
    """Headline figures and the per-labeler table (the public summary contract)."""
    full = report(db=db, filters=filters)
    return {k: v for k, v in full.items() if k not in ("pairs", "trends")}


def pairs(*, db: Session, filters: Filters) -> dict[str, Any]:
    """Labeler × labeler agreement: the labelers and every pair that compared anything."""
    full = report(db=db, filters=filters)
    labelers = [{k: row[k] for k in ("user_id", "email", "name", "held_out")}
                for row in full["per_labeler"]]
    return {"filters": full["filters"], "labelers": labelers, "pairs": full["pairs"]}


def trends(*, db: Session, filters: Filters) -> dict[str, Any]:
    """Weekly agreement (all / training / held-out), volume and gold accuracy."""
    full = report(db=db, filters=filters)
    return {"filters": full["filters"], "reference": REFERENCE, "weeks": full["trends"]}


def page(*, db: Session, filters: Filters) -> dict[str, Any]:
    """Everything the agreement page shows: summary, heatmap matrix and weekly trends."""
    full = report(db=db, filters=filters)
    return {"summary": full, "heatmap": heatmap(full),
            "trends": {"reference": REFERENCE, "weeks": full["trends"]}}


def heatmap(full: dict[str, Any]) -> dict[str, Any]:
    """Labeler × labeler matrix of the labelers who compared anything (cells or None)."""
    shown = [row for row in full["per_labeler"] if row["n_comparisons"] > 0]
    ids = [row["user_id"] for row in shown]
    cells = {(p["user_a"], p["user_b"]): p for p in full["pairs"]}
    matrix = [
        [cells.get((min(a, b), max(a, b))) if a != b else None for b in ids] for a in ids
    ]
    return {"labelers": shown, "matrix": matrix}


CSV_COLUMNS = (
    "user_id", "email", "name", "held_out", "pairwise_agreement", "ci95_lo", "ci95_hi",
    "n_comparisons", "kendall_tau_b", "n_tasks", "tasks_per_hour", "median_seconds",
    "skip_rate", "n_skipped", "gold_accuracy", "n_gold", "position_bias_observed",
    "position_bias_expected", "position_bias_ratio",
)


def labeler_csv(*, db: Session, filters: Filters) -> str:
    """The per-labeler table as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in summary(db=db, filters=filters)["per_labeler"]:
        ci = row["ci95"] or [None, None]
        flat = {**row, "ci95_lo": ci[0], "ci95_hi": ci[1]}
        writer.writerow(["" if flat[c] is None else _csv_cell(flat[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    # Emails and names are user-entered: keep spreadsheets from running them as formulas.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return round(value, 6) if isinstance(value, float) else value


def build_report(*, db: Session, filters: Filters) -> dict[str, Any]:
    """Compute the report from the database, without the cache."""
    users = loading.load_users(db, filters)
    skips = loading.load_assignment_counts(db, filters)
    gold = loading.load_gold_answers(db, filters)
    if filters.kind == TaskKind.rank:
        cols, seconds, is_gold = loading.load_rankings(db, filters)
        body = rank_report(cols=cols, seconds=seconds, is_gold=is_gold, users=users,
                           gold_answers=gold, skips=skips, n_boot=N_BOOT, seed=SEED)
    else:
        body = rate_report(ratings=loading.load_rate_ratings(db, filters), users=users,
                           gold_answers=gold, skips=skips, tolerance=GOLD_LIKERT_TOLERANCE)
    patterns, multiplicity = loading.load_likert_patterns(db, filters)
    body["likert_alpha"] = compute.likert_reliability(patterns, multiplicity)
    flag_n, flag_yes = loading.load_flag_units(db, filters)
    body["flag_kappa"] = compute.flag_reliability(patterns, multiplicity, flag_n, flag_yes,
                                                  FLAGS)
    body["filters"] = {"kind": filters.kind.value, "group": filters.group,
                       "since": _iso(filters.since), "until": _iso(filters.until)}
    body["reference"] = REFERENCE
    return body


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
