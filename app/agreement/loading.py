"""Reading what the agreement figures need from the database, as numpy columns.

A handful of queries, each one pass over a table with the filters applied in SQL; the
big ones (rankings, ratings) return only the columns the metrics use.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    Float,
    String,
    Text,
    case,
    cast,
    func,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from app.agreement import compute, parsing
from app.agreement.compute import RankingColumns
from app.auth.models import Role, User
from app.labeling.models import FLAGS, Ranking, Rating
from app.prompts.models import Prompt
from app.queue.models import Assignment, AssignmentState, Task, TaskKind


@dataclass(frozen=True)
class Filters:
    """Which labels count: task kind, a half-open time window [since, until), labeler group."""

    kind: TaskKind = TaskKind.rank
    since: datetime | None = None
    until: datetime | None = None
    group: str = "all"  # all | training | held_out


@dataclass
class UserInfo:
    ids: np.ndarray
    email: list[str]
    name: list[str]
    held_out: np.ndarray
    is_labeler: np.ndarray


def _json(value: Any) -> Any:
    # psycopg parses JSON columns itself; SQLite hands back text.
    return json.loads(value) if isinstance(value, str) else value


def _filtered(stmt: Select, time_col: Any, user_col: Any, f: Filters) -> Select:
    """Apply the time window and labeler group to a statement that joins tasks."""
    stmt = stmt.where(Task.kind == f.kind)
    if f.since is not None:
        stmt = stmt.where(time_col >= f.since)
    if f.until is not None:
        stmt = stmt.where(time_col < f.until)
    if f.group != "all":
        stmt = stmt.join(User, User.id == user_col).where(
            User.held_out.is_(f.group == "held_out"))
    return stmt


def data_version(db: Session) -> tuple:
    """A cheap fingerprint of the data the figures depend on: new labels, skips, groups.

    Index-only maxima, so it costs milliseconds; deletions are caught by the cache's
    time-to-live instead.
    """
    finished = Assignment.state.in_([AssignmentState.submitted, AssignmentState.skipped])
    parts = [
        select(func.max(Ranking.id)), select(func.max(Rating.id)),
        select(func.max(Assignment.finished_at)).where(finished),
        select(func.count(User.id)).where(User.held_out.is_(True)),
        select(func.sum(User.id)).where(User.held_out.is_(True)),
        select(func.count(Task.id)).where(Task.gold.is_(True)),
    ]
    row = db.execute(select(*(p.scalar_subquery() for p in parts))).one()
    return tuple(str(v) for v in row)


def load_users(db: Session, f: Filters) -> UserInfo:
    """Every labeler (and anyone else who labeled), in the requested group."""
    stmt = select(User.id, User.email, User.name, User.held_out, User.role).order_by(User.id)
    if f.group != "all":
        stmt = stmt.where(User.held_out.is_(f.group == "held_out"))
    rows = db.execute(stmt).all()
    return UserInfo(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        email=[r[1] for r in rows], name=[r[2] or "" for r in rows],
        held_out=np.array([bool(r[3]) for r in rows], dtype=bool),
        is_labeler=np.array([r[4] == Role.labeler for r in rows], dtype=bool),
    )


def _json_texts(texts: list[str]) -> list[Any]:
    # One parse of one big array is several times faster than a parse per row.
    return json.loads("[" + ",".join(t or "null" for t in texts) + "]") if texts else []


def _is_postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def _flat_from_json(groups_texts: list[str], shown_texts: list[str]) -> tuple:
    """(k, ids, ranks, first shown id): candidates of each ranking by id, with json.loads."""
    k: list[int] = []
    ids: list[int] = []
    ranks: list[int] = []
    first: list[int] = []
    for groups, shown in zip(_json_texts(groups_texts), _json_texts(shown_texts), strict=True):
        position = {cid: g for g, group in enumerate(groups or ()) for cid in group}
        order = sorted(position)
        k.append(len(order))
        ids.extend(order)
        ranks.extend(position[cid] for cid in order)
        first.append(shown[0] if shown else -1)
    return (np.array(k, np.int64), np.array(ids, np.int64), np.array(ranks, np.int64),
            np.array(first, np.int64))


def _flat_rankings(groups_texts: list[str], shown_texts: list[str]) -> tuple:
    """(k, ids, ranks, first shown id) of every ranking, ids sorted within each ranking.

    ids and ranks are flat (ranking i owns the next k[i] entries); rank is the index of
    the group a candidate is in. Parsed with numpy; texts it cannot vouch for (or that
    list a candidate twice) go through json.loads instead.
    """
    n = len(groups_texts)
    groups, shown = parsing.int_lists(groups_texts), parsing.int_lists(shown_texts)
    if groups is None or shown is None or (groups[1] != 2).any() or (shown[1] != 1).any():
        return _flat_from_json(groups_texts, shown_texts)
    row, _, inner, cid = groups
    order = np.lexsort((cid, row))
    row, inner, cid = row[order], inner[order], cid[order]
    if ((row[1:] == row[:-1]) & (cid[1:] == cid[:-1])).any():
        return _flat_from_json(groups_texts, shown_texts)
    first = np.full(n, -1, np.int64)
    shown_row, shown_id = shown[0], shown[3]
    heads = np.flatnonzero(np.diff(shown_row, prepend=-1) != 0)
    first[shown_row[heads]] = shown_id[heads]
    return np.bincount(row, minlength=n).astype(np.int64), cid, inner, first


def _rankings_stmt(db: Session, f: Filters) -> Select:
    # Epoch seconds from PostgreSQL directly; SQLite's datetimes are converted in Python.
    created = (cast(func.extract("epoch", Ranking.created_at), Float) if _is_postgres(db)
               else Ranking.created_at)
    stmt = (
        select(Ranking.task_id, Ranking.user_id, Ranking.seconds_spent, Task.gold,
               Prompt.category, created, cast(Ranking.display_order, Text),
               cast(Ranking.groups, Text))
        .join(Task, Task.id == Ranking.task_id)
        .outerjoin(Prompt, Prompt.id == Ranking.prompt_id)
    )
    return _filtered(stmt, Ranking.created_at, Ranking.user_id, f)


def load_rankings(db: Session, f: Filters) -> tuple[RankingColumns, np.ndarray, np.ndarray]:
    """The filtered rankings as columns, plus seconds spent and the gold flag per ranking."""
    # Core execution: plain rows, no ORM bookkeeping per row.
    rows = db.connection().execute(_rankings_stmt(db, f)).all()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    k, ids, ranks, first = _flat_rankings(list(cols[7]), list(cols[6]))
    created = (np.array(cols[5], np.float64) if _is_postgres(db)
               else np.array([c.timestamp() for c in cols[5]], np.float64))
    id_mat, rank_mat = compute.padded(ids, k), compute.padded(ranks, k)
    in_top = rank_mat == 0
    ranking_cols = RankingColumns(
        task_id=np.array(cols[0], np.int64), user_id=np.array(cols[1], np.int64),
        created_s=created, set_key=compute.set_keys(id_mat, k), ranks=rank_mat,
        category=np.array([c or "" for c in cols[4]], dtype=object),
        first_in_top=(in_top & (id_mat == first[:, None])).any(axis=1),
        top_size=in_top.sum(axis=1).astype(np.int64),
    )
    return ranking_cols, np.array(cols[2], np.float64), np.array(cols[3], bool)


def load_rate_ratings(db: Session, f: Filters) -> dict[str, np.ndarray]:
    """Ratings of rate tasks as columns (one rating is one rate task done)."""
    stmt = (
        select(Rating.task_id, Rating.user_id, Rating.candidate_id, Rating.likert,
               Rating.seconds_spent, Rating.created_at, Task.gold)
        .join(Task, Task.id == Rating.task_id)
    )
    rows = db.execute(_filtered(stmt, Rating.created_at, Rating.user_id, f)).all()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    return {
        "task_id": np.array(cols[0], np.int64), "user_id": np.array(cols[1], np.int64),
        "candidate_id": np.array(cols[2], np.int64), "likert": np.array(cols[3], np.int64),
        "seconds": np.array(cols[4], np.float64),
        "created_s": np.array([c.timestamp() for c in cols[5]], np.float64),
        "gold": np.array(cols[6], bool),
    }


def _ratings_of_kind(f: Filters, *columns: Any) -> Select:
    stmt = select(*columns).join(Task, Task.id == Rating.task_id)
    return _filtered(stmt, Rating.created_at, Rating.user_id, f)


def load_likert_patterns(db: Session, f: Filters) -> tuple[np.ndarray, np.ndarray]:
    """Distinct per-output Likert count vectors (P, 7) and how many outputs have each.

    Krippendorff's α and the raters-per-output only depend on these patterns, so the
    database sends a few hundred rows instead of one per rating.
    """
    per_value = [func.sum(case((Rating.likert == v, 1), else_=0)).label(f"c{v}")
                 for v in range(1, 8)]
    per_unit = _ratings_of_kind(f, *per_value).group_by(Rating.candidate_id).subquery()
    value_cols = [per_unit.c[f"c{v}"] for v in range(1, 8)]
    stmt = select(*value_cols, func.count()).group_by(*value_cols)
    rows = db.execute(stmt).all()
    if not rows:
        return np.zeros((0, 7)), np.zeros(0, np.int64)
    data = np.array(rows, dtype=np.int64)
    return data[:, :7], data[:, 7]


def load_flag_units(db: Session, f: Filters) -> tuple[np.ndarray, np.ndarray]:
    """For each output with a flag set: its rating count (n_i) and yes-votes per flag (U, F)."""
    flagged = _ratings_of_kind(f, Rating.candidate_id, cast(Rating.flags, Text)).where(
        cast(Rating.flags, String) != "[]")  # most ratings set no flag: leave them in SQL
    rows = db.connection().execute(flagged).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, len(FLAGS)))
    units = sorted({r[0] for r in rows})
    where = {u: i for i, u in enumerate(units)}
    index = {name: i for i, name in enumerate(FLAGS)}
    yes = np.zeros((len(units), len(FLAGS)))
    for (cid, _), flags in zip(rows, _json_texts([r[1] for r in rows]), strict=True):
        for name in set(flags or ()):
            if name in index:
                yes[where[cid], index[name]] += 1
    flagged_units = flagged.with_only_columns(Rating.candidate_id).scalar_subquery()
    counts = db.execute(_ratings_of_kind(f, Rating.candidate_id, func.count()).where(
        Rating.candidate_id.in_(flagged_units)).group_by(Rating.candidate_id)).all()
    n_of = dict(counts)
    return np.array([n_of.get(u, 0) for u in units], np.int64), yes


def load_gold_answers(db: Session, f: Filters) -> dict[int, Any]:
    """Known answers of this kind's gold tasks, by task id."""
    rows = db.execute(select(Task.id, Task.gold_answer).where(
        Task.gold.is_(True), Task.kind == f.kind, Task.gold_answer.is_not(None))).all()
    return {tid: _json(answer) for tid, answer in rows}


def load_assignment_counts(db: Session, f: Filters) -> dict[tuple[int, str], int]:
    """Finished assignments of this kind per (user, submitted | skipped)."""
    stmt = select(Assignment.user_id, Assignment.state, func.count()).join(
        Task, Task.id == Assignment.task_id).where(
        Assignment.state.in_([AssignmentState.submitted, AssignmentState.skipped]))
    stmt = _filtered(stmt, Assignment.finished_at, Assignment.user_id, f).group_by(
        Assignment.user_id, Assignment.state)
    return {(uid, AssignmentState(state).value): int(c) for uid, state, c in db.execute(stmt)}
