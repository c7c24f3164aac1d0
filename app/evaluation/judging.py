"""Submitting a compare judgment: the compare kind's half of POST /api/v1/tasks/{id}/submit.

The same contract as the other kinds (app/labeling/service.py): validated before anything
is written, stored once per idempotency key, only on the user's live lease, and counted by
the queue in the same transaction. The answer is stored both as given (slot a / b, tie,
both bad) and as what it means (candidate / baseline / tie / both bad).
"""

from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.auth.models import User
from app.evaluation import service as campaigns
from app.evaluation.models import EvaluationItem, Judgment
from app.labeling import workbench
from app.labeling.schemas import SubmissionCreate, SubmissionRead
from app.labeling.service import (
    SubmissionError,
    check_common,
    check_flags,
    check_likert,
    handle_submissions,
    next_url,
)
from app.queue import service as queue
from app.queue.service import TaskRow

SLOTS = {"a": 0, "b": 1}

# A labeler's compare judgments count in their own work like every other submission.
workbench.register_submissions("compare", lambda user: workbench.submission_part(
    "compare", Judgment, select(EvaluationItem.prompt_id)
    .where(EvaluationItem.id == Judgment.item_id).scalar_subquery(), user))


def check_choice(choice: Any, order: list[int]) -> tuple[str, int | None]:
    """(a | b | tie | both_bad, the chosen candidate id or None) from what was sent: a
    candidate id of the task, "a" / "b" (the slots as shown), "tie" or "both_bad"."""
    if choice is None or choice == "":
        raise SubmissionError("Choose an answer: A is better, B is better, tie, or both bad.")
    if isinstance(choice, str):
        word = choice.lower()
        if word in ("tie", "both_bad"):
            return word, None
        if word in SLOTS:
            return word, order[SLOTS[word]]
        if choice.isdigit():
            choice = int(choice)
    if isinstance(choice, int) and not isinstance(choice, bool) and choice in order:
        return "ab"[order.index(choice)], choice
    raise SubmissionError(f"The answer {choice!r} is not one of this task's outputs, "
                          "'tie' or 'both_bad'.")


def check_ratings(ratings: dict[str, Any] | None, candidate_ids: list[int]) -> dict[str, Any]:
    """Optional Likert and flags per output: only this task's outputs, Likert 1..7, known
    flags."""
    out: dict[str, Any] = {}
    for key, rating in (ratings or {}).items():
        if not key.isdigit() or int(key) not in candidate_ids:
            raise SubmissionError(f"Ratings for {key}, which is not one of this task's outputs.")
        where = f" for output {'AB'[candidate_ids.index(int(key))]}"
        out[key] = {"likert": check_likert(rating.likert, where),
                    "flags": list(check_flags(rating.flags, where))}
    return out


@cache
def _insert_stmt(dialect: str) -> Any:
    build = pg_insert if dialect == "postgresql" else sqlite_insert
    return build(Judgment).on_conflict_do_nothing().returning(Judgment.id)


def _earlier(db: Session, user: User, task: TaskRow, key: str,
             exc: SubmissionError) -> SubmissionRead:
    row = db.scalar(select(Judgment).where(Judgment.user_id == user.id,
                                           Judgment.idempotency_key == key))
    if row is None:
        raise exc
    if row.task_id != task.id:
        raise SubmissionError("This idempotency key was already used for another task: "
                              "send a new key for each submission.", 409)
    return SubmissionRead(id=row.id, kind="compare", task_id=task.id,
                          assignment_id=row.assignment_id, next_url=next_url("compare"))


def _outcome(choice: str, chosen: int | None, item: EvaluationItem) -> str:
    if chosen is None:
        return choice  # tie | both_bad
    return "candidate" if chosen == item.candidate_id else "baseline"


def submit_compare(*, db: Session, user: User, task: TaskRow,
                   body: SubmissionCreate) -> SubmissionRead:
    """Store one judgment on the user's live lease of this compare task, exactly once.

    `task` is the task row the caller locked (queue.lock_task).
    """
    check_common(body)
    item = db.scalar(select(EvaluationItem).where(EvaluationItem.task_id == task.id))
    if item is None:
        raise SubmissionError(f"Task {task.id} belongs to no evaluation.", 404)
    try:
        assignment = queue.live_assignment(db=db, user=user, task_id=task.id,
                                           assignment_id=body.assignment_id, task_locked=True)
    except queue.QueueError as exc:
        return _earlier(db, user, task, body.idempotency_key,
                        SubmissionError(str(exc), exc.status))
    order = list(assignment.display_order or task.candidate_ids)
    try:
        choice, chosen = check_choice(body.choice, order)
        ratings = check_ratings(body.ratings, order)
    except SubmissionError as exc:
        return _earlier(db, user, task, body.idempotency_key, exc)
    conn = db.connection()
    row_id = conn.execute(_insert_stmt(conn.dialect.name), dict(
        evaluation_id=item.evaluation_id, item_id=item.id, task_id=task.id,
        assignment_id=assignment.id, user_id=user.id, choice=choice,
        outcome=_outcome(choice, chosen, item), display_order=order, ratings=ratings,
        seconds_spent=body.seconds_spent, idempotency_key=body.idempotency_key,
    )).scalar()
    if row_id is None:
        return _earlier(db, user, task, body.idempotency_key,
                        SubmissionError("This task was already submitted.", 409))
    queue.complete(db=db, assignment=assignment)
    # The last judgment completes the campaign (and what waits on it) in this transaction.
    campaigns.complete_if_judged(db=db, evaluation_id=item.evaluation_id)
    return SubmissionRead(id=row_id, kind="compare", task_id=task.id,
                          assignment_id=assignment.id, next_url=next_url("compare"))


handle_submissions("compare", submit_compare)  # labeling's submit hands compare tasks here
