"""Who labels what next: leases on tasks, heartbeats, skips, expiry and the submit's queue half.

Lock order everywhere: the task row, then its assignment row (DESIGN.md). The lease path
never waits on a lock (SKIP LOCKED), so it cannot deadlock; submit, heartbeat, skip and
expiry take the task first.
"""

import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from app.auth.models import User
from app.config import get_settings
from app.db import utcnow
from app.prompts.models import Candidate, Prompt, UseCase
from app.queue import sql
from app.queue.creation import (  # noqa: F401 - part of this service's interface
    create_bulk,
    create_demonstrate_tasks,
    create_demonstrate_tasks_for_train_prompts,
    create_rank_task,
    create_rate_tasks,
    create_write_prompt_tasks,
    task_stats,
)
from app.queue.errors import QueueError
from app.queue.models import Assignment, AssignmentState, Task, TaskKind, TaskState

__all__ = [
    "QueueError", "complete", "create_bulk", "create_demonstrate_tasks",
    "create_demonstrate_tasks_for_train_prompts", "create_rank_task", "create_rate_tasks",
    "create_write_prompt_tasks", "expire_leases", "get_assignment", "heartbeat",
    "live_assignment", "lock_task", "next_task", "retrying", "skip", "task_payload",
    "task_stats",
]

RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure
_ATTEMPTS = 3
_SWEEP_LIMIT = 20
_SWEEP_EVERY_S = 1.0
_last_sweep = float("-inf")
T = TypeVar("T")


def _lease_delta() -> timedelta:
    return timedelta(minutes=get_settings().lease_minutes)


def _rowcount(result: object) -> int:
    """Rows an UPDATE changed (a CursorResult; typed as the generic Result)."""
    return int(getattr(result, "rowcount", 0))


def _is_postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def next_task(*, db: Session, user: User, kind: TaskKind | None = None) -> Assignment | None:
    """Lease this user the highest-priority task they may do, or None when there is none."""
    kind = TaskKind(kind) if kind is not None else None
    if user.held_out:
        # Held-out labelers judge outputs only, so their preferences stay out of training.
        if kind not in (None, TaskKind.rate):
            return None
        kind = TaskKind.rate
    # No savepoint and retry here: the lease path never waits on a lock (SKIP LOCKED, and
    # the expiry sweep skips busy tasks), so it cannot deadlock; see `retrying` for callers
    # that own their transaction.
    return _lease(db, user, kind)


def retrying(db: Session, work: Callable[[], T], attempts: int = _ATTEMPTS) -> T:
    """Run `work` in a savepoint, again on a deadlock or serialization failure."""
    for attempt in range(attempts):
        try:
            with db.begin_nested():
                return work()
        except DBAPIError as exc:
            if not _retryable(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _sweep_due() -> bool:
    """At most one lazy expiry sweep per process per second: it is a statement per lease."""
    global _last_sweep
    now = time.monotonic()
    if now - _last_sweep < _SWEEP_EVERY_S:
        return False
    _last_sweep = now
    return True


def _lease(db: Session, user: User, kind: TaskKind | None) -> Assignment | None:
    now = utcnow()
    swept = _sweep_due() and _expire_some(db, now=now, limit=_SWEEP_LIMIT) >= 0
    held = _live_lease(db, user, kind, now)
    if held is not None:
        return held  # a reload must not burn another slot
    task = _pick(db, user, kind)
    if task is None and not swept and _expire_some(db, now=now, limit=_SWEEP_LIMIT):
        task = _pick(db, user, kind)  # the queue looked empty only because of lapsed leases
    return _new_assignment(db, user, task, now) if task is not None else None


# The hot path's statements are built once: building a statement and its cache key costs
# more CPU than PostgreSQL spends running it (bench/bench_queue.py).
@cache
def _pick_stmt(dialect: str, with_kind: bool) -> Any:
    pick = text(sql.pick_sql(dialect=dialect, with_kind=with_kind))
    return select(Task).from_statement(pick).execution_options(populate_existing=True)


@cache
def _live_lease_stmt(with_kind: bool) -> Any:
    stmt = text(sql.LIVE_LEASE.format(kind="AND t.kind = :kind" if with_kind else ""))
    return select(Assignment).from_statement(stmt)


_CLAIM = text(sql.CLAIM)
_SUBMIT_ASSIGNMENT = text(sql.SUBMIT_ASSIGNMENT)
_COUNT_SUBMISSION = text(sql.COUNT_SUBMISSION)
_LOCK_TASK = (select(Task).where(Task.id == bindparam("task_id")).with_for_update()
              .execution_options(populate_existing=True))
_LOCK_TASK_ID = select(Task.id).where(Task.id == bindparam("task_id")).with_for_update()
_TASK_OF_ASSIGNMENT = select(Assignment.task_id).where(Assignment.id == bindparam("assignment_id"))
_LOCK_ASSIGNMENT = (select(Assignment).where(Assignment.id == bindparam("assignment_id"))
                    .with_for_update().execution_options(populate_existing=True))
_INSERT_ASSIGNMENT = insert(Assignment).returning(Assignment)
_PROMPT_TEXT = select(Prompt.id, Prompt.text).where(Prompt.id == bindparam("prompt_id"))
_CANDIDATE_TEXTS = select(Candidate.id, Candidate.text).where(
    Candidate.id.in_(bindparam("ids", expanding=True)))


def _pick(db: Session, user: User, kind: TaskKind | None) -> Task | None:
    """Lock and claim a slot on the best task this user may take."""
    pick = _pick_stmt(db.get_bind().dialect.name, kind is not None)
    params: dict[str, object] = {"user_id": user.id}
    if kind is not None:
        params["kind"] = kind.value
    for _ in range(5):
        task = db.scalars(pick, params).first()
        if task is None:
            return None
        if _rowcount(db.execute(_CLAIM, {"task_id": task.id})) == 1:
            set_committed_value(task, "leased_labels", task.leased_labels + 1)
            return task
    return None  # lost every race for a slot (SQLite only): the client asks again


def _live_lease(db: Session, user: User, kind: TaskKind | None, now: datetime) -> Assignment | None:
    params: dict[str, object] = {"user_id": user.id, "now": now}
    if kind is not None:
        params["kind"] = kind.value
    return db.scalars(_live_lease_stmt(kind is not None), params).first()


def _new_assignment(db: Session, user: User, task: Task, now: datetime) -> Assignment:
    order: list[int] = []
    if task.kind in (TaskKind.rank, TaskKind.rate):
        # Each labeler sees their own order, so position bias can be measured later.
        order = list(task.candidate_ids)
        random.shuffle(order)
    # An INSERT … RETURNING that hands back the persistent object, without a unit-of-work
    # flush (which costs several times the statement on this path).
    return db.scalars(_INSERT_ASSIGNMENT, [dict(
        task_id=task.id, user_id=user.id, state=AssignmentState.leased,
        display_order=order, leased_at=now, expires_at=now + _lease_delta(),
    )]).one()


def get_assignment(*, db: Session, user: User, assignment_id: int) -> Assignment:
    """This user's assignment; 404 for anyone else's, so ids do not leak."""
    assignment = db.get(Assignment, assignment_id)
    if assignment is None or assignment.user_id != user.id:
        raise QueueError(f"No assignment {assignment_id} of yours.", status=404)
    return assignment


def lock_task(*, db: Session, task_id: int) -> Task | None:
    """Load a task and lock its row: the first lock of a submit (then `live_assignment`)."""
    return db.scalars(_LOCK_TASK, {"task_id": task_id}).first()


def _lock(db: Session, user: User, assignment_id: int, task_id: int | None = None,
          task_locked: bool = False) -> Assignment:
    """Lock the task row, then the assignment row; 404 unless it is this user's."""
    if task_id is None:
        task_id = db.scalar(_TASK_OF_ASSIGNMENT, {"assignment_id": assignment_id})
        if task_id is None:
            raise QueueError(f"No assignment {assignment_id} of yours.", status=404)
    if not task_locked:
        db.execute(_LOCK_TASK_ID, {"task_id": task_id})
    assignment = db.scalars(_LOCK_ASSIGNMENT, {"assignment_id": assignment_id}).first()
    if assignment is None or assignment.user_id != user.id or assignment.task_id != task_id:
        raise QueueError(f"No assignment {assignment_id} of yours for task {task_id}.", status=404)
    return assignment


def _require_live(assignment: Assignment, now: datetime) -> None:
    if assignment.state == AssignmentState.submitted:
        raise QueueError("This task was already submitted.", status=409)
    if assignment.state != AssignmentState.leased or assignment.expires_at <= now:
        raise QueueError(
            "Your lease on this task has expired or was given up; ask for the next task.",
            status=409,
        )


def live_assignment(*, db: Session, user: User, task_id: int, assignment_id: int,
                    task_locked: bool = False) -> Assignment:
    """Lock task then assignment and check the lease is this user's and still live.

    `task_locked=True` when the caller already holds the task row (`lock_task`).
    """
    assignment = _lock(db, user, assignment_id, task_id, task_locked)
    _require_live(assignment, utcnow())
    return assignment


def heartbeat(*, db: Session, user: User, assignment_id: int) -> Assignment:
    """Extend a live lease while its page is open."""
    assignment = _lock(db, user, assignment_id)
    now = utcnow()
    _require_live(assignment, now)
    assignment.expires_at = now + _lease_delta()
    db.flush()
    return assignment


def skip(*, db: Session, user: User, assignment_id: int, reason: str | None) -> None:
    """Give the task back; it is never offered to this user again."""
    assignment = _lock(db, user, assignment_id)
    if assignment.state == AssignmentState.skipped:
        return  # a repeated skip changes nothing
    if assignment.state != AssignmentState.leased:
        raise QueueError(f"This task is {assignment.state.value}; it cannot be skipped.", 409)
    assignment.state = AssignmentState.skipped
    assignment.finished_at = utcnow()
    assignment.skip_reason = (reason or "")[:200] or None
    _release_slots(db, Counter([assignment.task_id]))
    db.flush()


def complete(*, db: Session, assignment: Assignment) -> None:
    """The submit's queue half: mark submitted, count it, close the task when its overlap is met.

    Call after `live_assignment` in the same transaction (it holds the locks).
    """
    now = utcnow()
    done = _rowcount(db.execute(
        _SUBMIT_ASSIGNMENT, {"assignment_id": assignment.id, "now": now}
    ))
    if done != 1:
        raise QueueError("This task was already submitted or its lease ended.", status=409)
    counts = db.execute(
        _COUNT_SUBMISSION, {"task_id": assignment.task_id, "now": now}
    ).one()
    # Bring the loaded rows up to date from what was written, rather than expiring them
    # and paying a SELECT each on the next attribute access.
    set_committed_value(assignment, "state", AssignmentState.submitted)
    set_committed_value(assignment, "finished_at", now)
    task = db.identity_map.get(identity_key(Task, assignment.task_id))
    if task is not None:
        set_committed_value(task, "done_labels", counts.done_labels)
        set_committed_value(task, "leased_labels", counts.leased_labels)
        if counts.done_labels >= counts.required_labels:
            set_committed_value(task, "state", TaskState.closed)
            set_committed_value(task, "closed_at", now)


def _forget_counters(db: Session, task_id: int) -> None:
    """Expire a loaded task whose counters were changed in SQL, so it reloads them."""
    task = db.identity_map.get(identity_key(Task, task_id))
    if task is not None:
        db.expire(task)


def _release_slots(db: Session, per_task: Counter[int]) -> None:
    for task_id, n in per_task.items():
        db.execute(
            text("UPDATE tasks SET leased_labels = leased_labels - :n WHERE id = :task_id"),
            {"n": n, "task_id": task_id},
        )
        _forget_counters(db, task_id)


def _expire_some(db: Session, *, now: datetime, limit: int) -> int:
    """Expire up to `limit` lapsed leases whose task nobody holds; returns how many."""
    rows = db.execute(text(sql.EXPIRED), {"now": now, "limit": limit}).all()
    if not rows:
        return 0
    task_ids = sorted({r.task_id for r in rows})
    lock = select(Task.id).where(Task.id.in_(task_ids)).order_by(Task.id)
    if _is_postgres(db):
        lock = lock.with_for_update(skip_locked=True)  # a busy task is expired next time
    locked = set(db.scalars(lock))
    lapsed = db.scalars(
        select(Assignment).where(
            Assignment.id.in_([r.id for r in rows if r.task_id in locked]),
            Assignment.state == AssignmentState.leased, Assignment.expires_at <= now,
        ).with_for_update().execution_options(populate_existing=True)
    ).all()
    for assignment in lapsed:
        assignment.state = AssignmentState.expired
        assignment.finished_at = now
    db.flush()
    _release_slots(db, Counter(a.task_id for a in lapsed))
    return len(lapsed)


def expire_leases(*, db: Session, batch: int = 500) -> int:
    """Free the slots of every lapsed lease (the beat task); returns how many expired."""
    total = 0
    while True:
        n = _expire_some(db, now=utcnow(), limit=batch)
        total += n
        if n < batch:
            return total


def task_payload(*, db: Session, assignment: Assignment) -> dict[str, object]:
    """What a labeler's client needs for an assignment; never the gold answer."""
    # Right after a lease the task is already in the session: no query for it then.
    task = db.get(Task, assignment.task_id)
    if task is None:
        raise QueueError(f"There is no task {assignment.task_id}.", status=404)
    prompt = db.execute(_PROMPT_TEXT, {"prompt_id": task.prompt_id}).first() \
        if task.prompt_id is not None else None
    by_id: dict[int, str] = {}
    if assignment.display_order:
        by_id = dict(db.execute(_CANDIDATE_TEXTS, {"ids": list(assignment.display_order)}).all())
    params = {k: v for k, v in (task.params or {}).items() if k in ("prompt_kind", "use_case_id")}
    if params.get("use_case_id"):
        use_case = db.get(UseCase, params["use_case_id"])
        if use_case is not None:
            params["use_case"] = {"name": use_case.name, "description": use_case.description}
    return {
        "task_id": task.id, "assignment_id": assignment.id, "kind": task.kind,
        "prompt": {"id": prompt.id, "text": prompt.text} if prompt else None,
        "candidates": [
            {"id": cid, "text": by_id[cid]} for cid in assignment.display_order
            if cid in by_id
        ],
        "expires_at": assignment.expires_at, "params": params,
    }
