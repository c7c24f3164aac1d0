"""Submitting labels: server-side validation and the idempotent, lease-checked store.

A submission is one transaction: find an earlier submission with the same idempotency key
(a retry after success gets the original answer), validate the body, take the queue's
live-lease lock (task row, then assignment), store the rows and let the queue count them.
Bad input raises SubmissionError before anything is written.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import User
from app.errors import DomainError
from app.labeling.models import FLAGS, Demonstration, Ranking, Rating, WrittenPrompt
from app.labeling.schemas import SubmissionCreate, SubmissionRead
from app.queue import service as queue
from app.queue.models import TaskKind
from app.queue.sql import AssignmentRow, TaskRow

DEMONSTRATION_MAX = 20_000
PROMPT_MAX = 10_000
COMMENT_MAX = 2_000
EXAMPLES_MAX = 10
KEY_MIN, KEY_MAX = 8, 100
SECONDS_MAX = 24 * 3600
PROMPT_KINDS = ("plain", "few_shot", "user_based")
_FLAG_ORDER = {name: i for i, name in enumerate(FLAGS)}
_ROW_OF_KIND: dict[TaskKind, Any] = {
    TaskKind.demonstrate: Demonstration,
    TaskKind.rank: Ranking,
    TaskKind.rate: Rating,
    TaskKind.write_prompt: WrittenPrompt,
}


class SubmissionError(DomainError, ValueError):
    """A submission that cannot be stored; the message says what to fix."""

    status = 422


@dataclass(frozen=True)
class _Clean:
    """A validated submission body, ready to store."""

    text: str = ""
    groups: tuple[tuple[int, ...], ...] = ()
    ratings: tuple[tuple[int, int, tuple[str, ...]], ...] = ()  # (candidate, likert, flags)
    likert: int = 0
    flags: tuple[str, ...] = ()
    comment: str = ""
    prompt_kind: str = ""
    examples: tuple[tuple[str, str], ...] = ()


# --- validation (pure) ----------------------------------------------------------------


def check_flags(flags: list[str], where: str = "") -> tuple[str, ...]:
    """Known flags, each once, in the paper's order."""
    unknown = sorted({f for f in flags if f not in _FLAG_ORDER})
    if unknown:
        raise SubmissionError(
            f"Unknown flag{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}{where}. "
            f"Known flags: {', '.join(FLAGS)}."
        )
    return tuple(sorted(set(flags), key=_FLAG_ORDER.__getitem__))


def check_likert(value: int | None, where: str = "") -> int:
    """A Likert score in 1..7."""
    if value is None:
        raise SubmissionError(f"Give a Likert score from 1 to 7{where}.")
    if not 1 <= value <= 7:
        raise SubmissionError(f"The Likert score{where} must be from 1 to 7, not {value}.")
    return value


def check_text(value: str | None, *, what: str, limit: int, required: bool = True) -> str:
    """Text within its length limit (and not blank when required)."""
    text = value or ""
    if required and not text.strip():
        raise SubmissionError(f"The {what} is empty: write it before submitting.")
    if len(text) > limit:
        raise SubmissionError(
            f"The {what} has {len(text):,} characters; the limit is {limit:,}. Shorten it."
        )
    return text


def _check_place(place: int, group: list[int], expected: set[int], seen: set[int]) -> None:
    """One place of a ranking: not empty, only the task's outputs, none placed before
    (its ids are added to `seen`)."""
    if not group:
        raise SubmissionError(f"Place {place} of the ranking is empty.")
    for cid in group:
        if cid not in expected:
            raise SubmissionError(f"Output {cid} is not one of this task's outputs.")
        if cid in seen:
            raise SubmissionError(f"Output {cid} appears more than once in the ranking.")
        seen.add(cid)


def check_ranking(ranking: list[list[int]] | None, candidate_ids: list[int]) -> tuple:
    """An ordered partition of exactly these candidates: every id once, groups are ties."""
    if not ranking:
        raise SubmissionError("The ranking is missing: order the outputs best to worst.")
    expected, seen = set(candidate_ids), set[int]()
    for place, group in enumerate(ranking, start=1):
        _check_place(place, group, expected, seen)
    missing = [cid for cid in candidate_ids if cid not in seen]
    if missing:
        raise SubmissionError(
            f"The ranking leaves out output{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(str, missing))}: place every output."
        )
    return tuple(tuple(group) for group in ranking)


def check_rank_ratings(ratings: dict[str, Any] | None, candidate_ids: list[int]) -> tuple:
    """A Likert score and flags for each of exactly these candidates."""
    given = ratings or {}
    unknown = [key for key in given if not key.isdigit() or int(key) not in candidate_ids]
    if unknown:
        raise SubmissionError(f"Ratings for {', '.join(unknown)}, which are not this task's "
                              "outputs.")
    out = []
    for cid in candidate_ids:
        rating = given.get(str(cid))
        where = f" for output {cid}"
        if rating is None:
            raise SubmissionError(f"Give a Likert score from 1 to 7{where}.")
        out.append((cid, check_likert(rating.likert, where), check_flags(rating.flags, where)))
    return tuple(out)


def check_common(body: SubmissionCreate) -> None:
    """What every submission must carry, whatever its kind: a sane key and time spent."""
    key = body.idempotency_key
    if not KEY_MIN <= len(key) <= KEY_MAX or not key.isascii() or not key.isprintable():
        raise SubmissionError(
            f"idempotency_key must be {KEY_MIN} to {KEY_MAX} printable ASCII characters "
            "(a random UUID is a good choice).", 400)
    if not 0 <= body.seconds_spent <= SECONDS_MAX:
        raise SubmissionError(f"seconds_spent must be from 0 to {SECONDS_MAX}.", 400)


def _check_prompt(body: SubmissionCreate, task: TaskRow) -> _Clean:
    kind = body.prompt_kind or task.params.get("prompt_kind") or "plain"
    wanted = task.params.get("prompt_kind")
    if wanted and kind != wanted:
        raise SubmissionError(f"This task asks for a {wanted} prompt, not {kind}.")
    examples = tuple((e.input, e.output) for e in body.examples or ())
    if kind == "few_shot" and not examples:
        raise SubmissionError("A few-shot prompt needs at least one example.")
    if len(examples) > EXAMPLES_MAX:
        raise SubmissionError(f"Give at most {EXAMPLES_MAX} examples.")
    for n, (given, wanted_out) in enumerate(examples, start=1):
        check_text(given, what=f"input of example {n}", limit=PROMPT_MAX)
        check_text(wanted_out, what=f"output of example {n}", limit=PROMPT_MAX)
    text = check_text(body.text, what="prompt", limit=PROMPT_MAX)
    return _Clean(text=text, prompt_kind=kind, examples=examples)


def validate(body: SubmissionCreate, task: TaskRow) -> _Clean:
    """The body checked against its task; raises SubmissionError with what to fix."""
    check_common(body)
    if task.kind == TaskKind.demonstrate:
        return _Clean(text=check_text(body.text, what="response", limit=DEMONSTRATION_MAX))
    if task.kind == TaskKind.rank:
        ids = list(task.candidate_ids)
        groups = check_ranking(body.ranking, ids)
        return _Clean(groups=groups, ratings=check_rank_ratings(body.ratings, ids))
    if task.kind == TaskKind.rate:
        return _Clean(
            likert=check_likert(body.likert),
            flags=check_flags(body.flags or []),
            comment=check_text(body.comment, what="comment", limit=COMMENT_MAX, required=False),
        )
    return _check_prompt(body, task)


# --- storing ----------------------------------------------------------------------------


def _existing(db: Session, user: User, kind: TaskKind | str, key: str) -> Any | None:
    row_type = _ROW_OF_KIND[TaskKind(kind)]
    return db.scalar(
        select(row_type).where(row_type.user_id == user.id, row_type.idempotency_key == key)
    )


def _answer(row: Any, task: TaskRow) -> SubmissionRead:
    if row.task_id != task.id:
        raise SubmissionError("This idempotency key was already used for another task: "
                              "send a new key for each submission.", 409)
    return SubmissionRead(id=row.id, kind=str(task.kind), task_id=task.id,
                          assignment_id=row.assignment_id, next_url=next_url(task.kind))


def next_url(kind: TaskKind | str | None = None) -> str:
    """The page that leases the labeler's next task (of this kind, or any)."""
    return f"/label/next?kind={TaskKind(kind).value}" if kind else "/label/next"


def _insert_once(db: Session, row_type: Any, values: dict[str, Any]) -> int | None:
    """INSERT one submission row unless it would break a unique constraint (the same
    idempotency key or assignment twice): its id, or None when nothing was stored."""
    # On the session's connection: a Core INSERT, without the ORM's bulk-insert layer.
    conn = db.connection()
    return conn.execute(_insert_once_stmt(conn.dialect.name, row_type), values).scalar()


@cache
def _insert_once_stmt(dialect: str, row_type: Any) -> Any:
    build = pg_insert if dialect == "postgresql" else sqlite_insert
    return build(row_type).on_conflict_do_nothing().returning(row_type.id)


def _store(db: Session, user: User, task: TaskRow, assignment: AssignmentRow,
           clean: _Clean, body: SubmissionCreate) -> int | None:
    """Store a demonstration, ranking (with its ratings) or rating as Core INSERTs; the id
    of the submission row, or None when a unique constraint already held one."""
    common = dict(task_id=task.id, assignment_id=assignment.id, user_id=user.id,
                  seconds_spent=body.seconds_spent, idempotency_key=body.idempotency_key)
    if task.kind == TaskKind.demonstrate:
        return _insert_once(db, Demonstration, dict(prompt_id=task.prompt_id, text=clean.text,
                                                    **common))
    if task.kind == TaskKind.rate:
        return _insert_once(db, Rating, dict(candidate_id=task.candidate_ids[0],
                                             likert=clean.likert, flags=list(clean.flags),
                                             comment=clean.comment, **common))
    ranking_id = _insert_once(db, Ranking, dict(
        prompt_id=task.prompt_id, groups=[list(g) for g in clean.groups],
        display_order=list(assignment.display_order or task.candidate_ids), **common))
    if ranking_id is not None:  # one rating per output, in one executemany
        db.connection().execute(insert(Rating), [
            dict(task_id=task.id, assignment_id=assignment.id, ranking_id=ranking_id,
                 user_id=user.id, candidate_id=cid, likert=likert, flags=list(flags),
                 comment="", seconds_spent=0, idempotency_key=None)
            for cid, likert, flags in clean.ratings
        ])
    return ranking_id


def _written_prompt(db: Session, user: User, task: TaskRow, assignment: AssignmentRow,
                    clean: _Clean, body: SubmissionCreate) -> WrittenPrompt:
    """Store a labeler-written prompt and the submission row that points at it."""
    prompt = _create_prompt(db, user, task, clean)
    row = WrittenPrompt(prompt_id=prompt.id, prompt_kind=clean.prompt_kind, task_id=task.id,
                        assignment_id=assignment.id, user_id=user.id,
                        seconds_spent=body.seconds_spent,
                        idempotency_key=body.idempotency_key)
    db.add(row)
    db.flush()
    return row


def _create_prompt(db: Session, user: User, task: TaskRow, clean: _Clean) -> Any:
    from app.prompts import service as prompts

    # A few-shot prompt is one text: the instruction, then its input/output pairs.
    text = "\n\n".join([clean.text.strip()] + [
        f"Input: {given.strip()}\nOutput: {wanted.strip()}" for given, wanted in clean.examples
    ])
    if len(text) > PROMPT_MAX:
        raise SubmissionError(f"The prompt with its examples has {len(text):,} characters; "
                              f"the limit is {PROMPT_MAX:,}.")
    try:
        return prompts.create_labeler_prompt(
            db=db, user=user, text=text, prompt_kind=clean.prompt_kind,
            use_case_id=task.params.get("use_case_id"),
        )
    except ValueError as exc:  # a duplicate of an existing prompt, a missing use case
        raise SubmissionError(str(exc), getattr(exc, "status", 422)) from exc


def _earlier_or(db: Session, user: User, task: TaskRow, key: str,
                exc: SubmissionError) -> SubmissionRead:
    """The answer of an earlier submission with this key, or raise `exc`."""
    earlier = _existing(db, user, task.kind, key)
    if earlier is not None:
        return _answer(earlier, task)
    raise exc


def _store_and_count(db: Session, user: User, task: TaskRow, assignment: AssignmentRow,
                     clean: _Clean, body: SubmissionCreate) -> int | None:
    """Store the submission and let the queue count it; None when a unique constraint
    already held one (the same assignment or key)."""
    if task.kind == TaskKind.write_prompt:
        # It creates a prompt first, so a clash must roll that back too: a savepoint.
        try:
            with db.begin_nested():
                row_id = _written_prompt(db, user, task, assignment, clean, body).id
                queue.complete(db=db, assignment=assignment)
        except IntegrityError:
            return None
        return row_id
    stored = _store(db, user, task, assignment, clean, body)
    if stored is not None:
        queue.complete(db=db, assignment=assignment)
    return stored


# Task kinds whose submissions a higher layer stores (compare: app.evaluation.judging), by
# kind: the handler gets the locked task row and must store the answer exactly once.
SubmitHandler = Callable[..., SubmissionRead]
SUBMIT_HANDLERS: dict[str, SubmitHandler] = {}


def handle_submissions(kind: str, handler: SubmitHandler) -> None:
    """Let a higher layer store the submissions of one task kind."""
    SUBMIT_HANDLERS[kind] = handler


def submit(*, db: Session, user: User, task_id: int, body: SubmissionCreate) -> SubmissionRead:
    """Store one submission for the user's live lease on this task, exactly once.

    A retry of a submission that succeeded gets the original answer (even though the lease
    is no longer live): the key is looked up only when the submission cannot be stored, so
    the usual submit costs no extra query.
    """
    # The task row is the submit's first lock (then the assignment's); it is loaded with it.
    task = queue.lock_task(db=db, task_id=task_id)
    if task is None:
        raise SubmissionError(f"There is no task {task_id}.", 404)
    handler = SUBMIT_HANDLERS.get(str(task.kind))
    if handler is not None:  # e.g. blind evaluation judgments live with their campaign
        return handler(db=db, user=user, task=task, body=body)
    check_common(body)
    try:
        clean = validate(body, task)
    except SubmissionError as exc:
        return _earlier_or(db, user, task, body.idempotency_key, exc)
    try:
        assignment = queue.live_assignment(db=db, user=user, task_id=task_id,
                                           assignment_id=body.assignment_id, task_locked=True)
    except queue.QueueError as exc:
        # An identical submit that held the lock before us has committed by now.
        error = SubmissionError(str(exc), exc.status)
        return _earlier_or(db, user, task, body.idempotency_key, error)
    try:
        row_id = _store_and_count(db, user, task, assignment, clean, body)
    except queue.QueueError as exc:  # the lease ended under us: nothing may be kept
        raise SubmissionError(str(exc), exc.status) from exc
    if row_id is None:
        error = SubmissionError("This task was already submitted.", 409)
        return _earlier_or(db, user, task, body.idempotency_key, error)
    return SubmissionRead(id=row_id, kind=str(task.kind), task_id=task.id,
                          assignment_id=assignment.id, next_url=next_url(task.kind))
