"""What researchers look at and act on in the browser: one task's labels side by side, the
tasks behind a low-agreement pair of labelers, prompt flags, and the review of
demonstrations and labeler-written prompts. Plain functions; the caller commits."""

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from app.auth.models import User
from app.db import utcnow
from app.labeling.models import (
    Demonstration,
    PromptFlag,
    Ranking,
    Rating,
    WrittenPrompt,
)
from app.labeling.service import COMMENT_MAX, SubmissionError
from app.metrics import pairwise_agreement, rank_vector
from app.prompts.models import Candidate, Prompt
from app.queue.models import Assignment, Task

LETTERS = "ABCDEFGHI"
REVIEWS = ("accepted", "rejected")
REVIEW_PAGE = 50


@dataclass
class LabelerColumn:
    """One labeler's answer on a task: place, Likert and flags per candidate."""

    user: User
    state: str
    places: dict[int, int] = field(default_factory=dict)  # candidate id -> place (1 = best)
    likert: dict[int, int] = field(default_factory=dict)
    flags: dict[int, list[str]] = field(default_factory=dict)
    comment: str = ""
    seconds: int | None = None
    groups: list[list[int]] | None = None
    # candidate id -> the letter this labeler saw it under (their shuffled display order)
    seen_as: dict[int, str] = field(default_factory=dict)


@dataclass
class TaskView:
    task: Task
    prompt: Prompt | None
    candidates: list[tuple[str, Candidate]]  # (letter, candidate) in the task's order
    columns: list[LabelerColumn]
    pair_agreement: list[dict[str, Any]]  # two labelers, share of pairs ordered alike, n
    likert_spread: dict[int, int]  # candidate id -> max - min Likert over labelers
    mean_agreement: float | None


def _letter(i: int) -> str:
    return LETTERS[i] if i < len(LETTERS) else str(i + 1)


def _places(groups: list[list[int]]) -> dict[int, int]:
    return {cid: place for place, group in enumerate(groups, start=1) for cid in group}


def _agreement(a: list[list[int]], b: list[list[int]]) -> tuple[float | None, int]:
    ids_a, ra = rank_vector(a)
    ids_b, rb = rank_vector(b)
    if ids_a != ids_b:
        return None, 0
    share, n = pairwise_agreement(ra, rb)
    return (None if np.isnan(share) else share), n


def _lettered_candidates(db: Session, task: Task) -> list[tuple[str, Candidate]]:
    """The task's candidates that still exist, each with its letter, in the task's order."""
    found = {c.id: c for c in db.scalars(select(Candidate).where(
        Candidate.id.in_(task.candidate_ids or [-1])))}
    return [(_letter(i), found[cid])
            for i, cid in enumerate(task.candidate_ids or []) if cid in found]


def _columns(db: Session, task_id: int) -> dict[int, LabelerColumn]:
    """A column per labeler assigned the task (by user id), in assignment order, empty."""
    columns: dict[int, LabelerColumn] = {}
    for assignment, user in db.execute(
        select(Assignment, User).join(User, User.id == Assignment.user_id)
        .where(Assignment.task_id == task_id).order_by(Assignment.id)
    ):
        columns[user.id] = LabelerColumn(
            user=user, state=assignment.state.value,
            seen_as={cid: _letter(i) for i, cid in enumerate(assignment.display_order or [])})
    return columns


def _fill_answers(db: Session, task_id: int, columns: dict[int, LabelerColumn]) -> None:
    """Each labeler's ranking and ratings into their column (answers without one are left)."""
    for ranking in db.scalars(select(Ranking).where(Ranking.task_id == task_id)):
        col = columns.get(ranking.user_id)
        if col is not None:
            col.groups, col.places = ranking.groups, _places(ranking.groups)
            col.seconds = ranking.seconds_spent
    for rating in db.scalars(select(Rating).where(Rating.task_id == task_id)):
        col = columns.get(rating.user_id)
        if col is not None:
            col.likert[rating.candidate_id] = rating.likert
            col.flags[rating.candidate_id] = list(rating.flags or [])
            if rating.ranking_id is None:
                col.comment, col.seconds = rating.comment, rating.seconds_spent


def _pair_agreement(columns: list[LabelerColumn]) -> list[dict[str, Any]]:
    """For every two labelers who ranked: the share of pairs they ordered alike, and n."""
    ranked = [c for c in columns if c.groups]
    pairs = []
    for a, b in combinations(ranked, 2):
        share, n = _agreement(a.groups or [], b.groups or [])
        pairs.append({"a": a.user, "b": b.user, "agreement": share, "n": n})
    return pairs


def _likert_spread(candidates: list[tuple[str, Candidate]],
                   columns: list[LabelerColumn]) -> dict[int, int]:
    """Per candidate rated by two or more labelers: the highest Likert minus the lowest."""
    spread = {}
    for _, cand in candidates:
        scores = [c.likert[cand.id] for c in columns if cand.id in c.likert]
        if len(scores) >= 2:
            spread[cand.id] = max(scores) - min(scores)
    return spread


def task_view(*, db: Session, task_id: int) -> TaskView:
    """One task with every labeler's answer side by side and how far they disagree."""
    task = db.get(Task, task_id)
    if task is None:
        raise SubmissionError(f"There is no task {task_id}.", 404)
    prompt = db.get(Prompt, task.prompt_id) if task.prompt_id else None
    candidates = _lettered_candidates(db, task)
    by_user = _columns(db, task_id)
    _fill_answers(db, task_id, by_user)
    columns = list(by_user.values())
    pairs = _pair_agreement(columns)
    shares: list[float] = [p["agreement"] for p in pairs if p["agreement"] is not None]
    return TaskView(task=task, prompt=prompt, candidates=candidates, columns=columns,
                    pair_agreement=pairs, likert_spread=_likert_spread(candidates, columns),
                    mean_agreement=sum(shares) / len(shares) if shares else None)


def shared_tasks(*, db: Session, labeler: int, other: int | None = None,
                 limit: int = 200) -> dict[str, Any]:
    """The rank tasks a labeler ranked alongside another labeler (or anyone), with their
    agreement on each, worst first: the tasks behind a low figure on the agreement page."""
    mine, theirs = aliased(Ranking), aliased(Ranking)
    stmt = (select(mine.task_id, mine.groups, theirs.user_id, theirs.groups)
            .join(theirs, (theirs.task_id == mine.task_id) & (theirs.user_id != mine.user_id))
            .where(mine.user_id == labeler).order_by(mine.task_id.desc()).limit(limit * 10))
    if other is not None:
        stmt = stmt.where(theirs.user_id == other)
    rows: dict[int, dict[str, Any]] = {}
    for task_id, groups_a, other_id, groups_b in db.execute(stmt):
        share, n = _agreement(groups_a, groups_b)
        row = rows.setdefault(task_id, {"task_id": task_id, "agree": 0.0, "n": 0,
                                        "labelers": set()})
        row["labelers"].add(other_id)
        if share is not None:
            row["agree"] += share * n
            row["n"] += n
    users = _labelers(db, labeler, other)
    return {"labeler": users[labeler], "other": users.get(other) if other else None,
            "tasks": _worst_first(list(rows.values()))[:limit]}


def _worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each task's agreement over its pairs (None without any), lowest first, unmeasured
    last, newest first among equals."""
    for row in rows:
        row["agreement"] = row["agree"] / row["n"] if row["n"] else None
    return sorted(rows, key=lambda r: (r["agreement"] is None, r["agreement"] or 0.0,
                                       -r["task_id"]))


def _labelers(db: Session, labeler: int, other: int | None) -> dict[int, User]:
    """The two labelers by id (a 404 SubmissionError for one that does not exist)."""
    users = {u.id: u for u in db.scalars(select(User).where(
        User.id.in_([labeler] + ([other] if other else []))))}
    if labeler not in users:
        raise SubmissionError(f"There is no labeler {labeler}.", 404)
    if other is not None and other not in users:
        raise SubmissionError(f"There is no labeler {other}.", 404)
    return users


# --- prompt flags -----------------------------------------------------------------------


def prompt_flags(*, db: Session, reason: str | None = None, limit: int = 300) -> list[Any]:
    """Flags labelers raised on prompts, newest first, with the prompt and who flagged."""
    stmt = (select(PromptFlag, Prompt.text, User.email)
            .join(Prompt, Prompt.id == PromptFlag.prompt_id)
            .join(User, User.id == PromptFlag.user_id)
            .order_by(PromptFlag.created_at.desc(), PromptFlag.id.desc()).limit(limit))
    if reason:
        stmt = stmt.where(PromptFlag.reason == reason)
    return list(db.execute(stmt).all())


def flag_counts(*, db: Session) -> dict[str, int]:
    rows = db.execute(select(PromptFlag.reason, func.count()).group_by(PromptFlag.reason))
    return {reason: n for reason, n in rows}


# --- review ---------------------------------------------------------------------------

_REVIEWABLE: dict[str, Any] = {"demonstration": Demonstration, "prompt": WrittenPrompt}


def review_queue(*, db: Session, what: str, state: str = "pending",
                 limit: int = REVIEW_PAGE) -> list[dict[str, Any]]:
    """Demonstrations or labeler-written prompts to review (or already reviewed)."""
    model = _model(what)
    stmt = (select(model, Prompt.text, User.email)
            .join(Prompt, Prompt.id == model.prompt_id)
            .join(User, User.id == model.user_id)
            .order_by(model.id).limit(limit))
    if state == "pending":
        stmt = stmt.where(model.review.is_(None))
    elif state in REVIEWS:
        stmt = stmt.where(model.review == state)
    return [{"row": row, "prompt": text, "email": email} for row, text, email in db.execute(stmt)]


def review_counts(*, db: Session) -> dict[str, dict[str, int]]:
    out = {}
    for what, model in _REVIEWABLE.items():
        counts = {"pending": 0, "accepted": 0, "rejected": 0}
        for review, n in db.execute(select(model.review, func.count()).group_by(model.review)):
            counts[review or "pending"] = n
        out[what] = counts
    return out


def set_review(*, db: Session, user: User, what: str, row_id: int, decision: str,
               reason: str) -> Any:
    """Accept or reject one demonstration or written prompt; a rejection needs a reason."""
    model = _model(what)
    if decision not in REVIEWS:
        raise SubmissionError("Choose accept or reject.", 422)
    reason = reason.strip()
    if decision == "rejected" and not reason:
        raise SubmissionError("Say why it is rejected.", 422)
    if len(reason) > COMMENT_MAX:
        raise SubmissionError(f"Keep the reason under {COMMENT_MAX:,} characters.", 422)
    row = db.get(model, row_id)
    if row is None:
        raise SubmissionError(f"There is no {what} {row_id}.", 404)
    row.review, row.review_reason = decision, reason or None
    row.reviewed_by_id, row.reviewed_at = user.id, utcnow()
    db.flush()
    return row


def _model(what: str) -> Any:
    if what not in _REVIEWABLE:
        raise SubmissionError(f"Nothing to review called {what!r}: demonstration or prompt.",
                              404)
    return _REVIEWABLE[what]



# --- gold answers ---------------------------------------------------------------------


def gold_form(*, db: Session, task_id: int) -> tuple[Task, list[tuple[str, Candidate]],
                                                      dict[str, str]]:
    """A rank or rate task, its outputs and its gold answer as form values."""
    view = task_view(db=db, task_id=task_id)
    task = view.task
    if task.kind.value not in ("rank", "rate"):
        raise SubmissionError("Only rank and rate tasks have gold answers.", 404)
    values: dict[str, str] = {"gold": "on" if task.gold else ""}
    answer = task.gold_answer
    if task.kind.value == "rank" and isinstance(answer, list):
        for place, group in enumerate(answer, start=1):
            for cid in group:
                values[f"place-{cid}"] = str(place)
    elif isinstance(answer, dict) and answer.get("likert") is not None:
        values["likert"] = str(answer["likert"])
    return task, view.candidates, values


def _gold_groups(values: dict[str, str],
                 candidates: list[tuple[str, Candidate]]) -> list[list[int]]:
    """The form's place per output as a ranking's groups (the same place: a tie)."""
    places: dict[int, int] = {}
    for letter, cand in candidates:
        raw = values.get(f"place-{cand.id}", "").strip()
        if not raw:
            raise SubmissionError(f"Give output {letter} a place (1 = best).")
        if not raw.isdigit() or not 1 <= int(raw) <= len(candidates):
            raise SubmissionError(f"The place of output {letter} must be a whole number "
                                  f"from 1 to {len(candidates)}, not {raw!r}.")
        places[cand.id] = int(raw)
    return [[cid for cid, p in places.items() if p == place]
            for place in sorted(set(places.values()))]


def set_gold(*, db: Session, task_id: int, values: dict[str, str]) -> Task:
    """Make a task gold with this known answer (or no longer gold). For rank: a place per
    output, the same place for a tie; for rate: the Likert score."""
    from app.labeling.service import check_likert, check_ranking

    task, candidates, _ = gold_form(db=db, task_id=task_id)
    if not values.get("gold"):
        task.gold = False
        db.flush()
        return task
    if task.kind.value == "rank":
        groups = _gold_groups(values, candidates)
        check_ranking(groups, [c.id for _, c in candidates])
        task.gold_answer = groups
    else:
        raw = values.get("likert", "").strip()
        if not raw.isdigit():
            raise SubmissionError("Choose the output's gold Likert score, 1 to 7.")
        task.gold_answer = {"likert": check_likert(int(raw))}
    task.gold = True
    db.flush()
    return task
