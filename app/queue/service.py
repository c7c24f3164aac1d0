"""Who labels what next: leases on tasks, heartbeats, skips, expiry and the submit's queue half.

Lock order everywhere: the task row, then its assignment row (DESIGN.md). The lease path
never waits on a lock (SKIP LOCKED), so it cannot deadlock; submit, heartbeat, skip and
expiry take the task first.
"""

import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.config import get_settings
from app.db import utcnow
from app.prompts.models import Candidate, UseCase
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
from app.queue.models import Assignment, AssignmentState, Task, TaskKind
from app.queue.sql import AssignmentRow, Extended, TaskRow

__all__ = [
    "QueueError", "complete", "create_bulk", "create_demonstrate_tasks",
    "create_demonstrate_tasks_for_train_prompts", "create_rank_task", "create_rate_tasks",
    "create_write_prompt_tasks", "expire_leases", "get_assignment", "heartbeat", "Lease",
    "live_assignment", "lock_task", "may_lease", "kinds_for_any", "available", "next_task",
    "skip", "task_payload", "task_stats", "unskip",
]

_SWEEP_LIMIT = 20
_SWEEP_EVERY_S = 1.0
_BUSY_WAIT_S = 0.5  # the longest a lease waits for tasks other transactions hold
_last_sweep = float("-inf")


# Output texts by id: an IN list the driver-level statements cannot expand on SQLite.
_CANDIDATE_TEXTS = select(Candidate.id, Candidate.text).where(
    Candidate.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True, slots=True)
class Lease:
    """A user's live assignment, with what its page needs of the task."""

    id: int  # the assignment's
    task_id: int
    kind: TaskKind
    prompt_id: int | None
    display_order: list[int]
    expires_at: datetime
    params: dict[str, Any]

    @classmethod
    def of(cls, assignment: Any, task: Any) -> "Lease":
        """From an assignment and its task (ORM objects or rows)."""
        return cls(id=assignment.id, task_id=assignment.task_id, kind=TaskKind(task.kind),
                   prompt_id=task.prompt_id, display_order=list(assignment.display_order or ()),
                   expires_at=assignment.expires_at, params=dict(task.params or {}))


def _lease_delta() -> timedelta:
    return timedelta(minutes=get_settings().lease_minutes)


def _is_postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def may_lease(user: User, kind: TaskKind | str) -> bool:
    """Whether the queue ever gives this user tasks of this kind: held-out labelers judge
    outputs only (compare, rate), so their preferences stay out of training."""
    return not user.held_out or TaskKind(kind) in (TaskKind.compare, TaskKind.rate)


def kinds_for_any(user: User) -> tuple[TaskKind, ...]:
    """The kinds "any task" hands this user: compare tasks only to held-out labelers."""
    if user.held_out:
        return (TaskKind.compare, TaskKind.rate)
    return tuple(k for k in TaskKind if k != TaskKind.compare)


def next_task(*, db: Session, user: User, kind: TaskKind | None = None) -> Lease | None:
    """Lease this user the highest-priority task they may do, or None when there is none."""
    kind = TaskKind(kind) if kind is not None else None
    if kind is not None and not may_lease(user, kind):
        return None
    if user.held_out and kind is None:
        # Blind comparisons (evaluation) first, then ratings.
        held = _live_lease(db, user, None, utcnow())
        return held or _lease(db, user, TaskKind.compare) or _lease(db, user, TaskKind.rate)
    # No savepoint and retry here: the lease path never waits on a lock (SKIP LOCKED, and
    # the expiry sweep skips busy tasks), so it cannot deadlock.
    return _lease(db, user, kind)


def available(*, db: Session, user: User, kind: TaskKind | str, cap: int) -> int:
    """How many tasks of this kind `next_task` could still lease this user (at most `cap`):
    the pick's own filter, so the labeler's counts and routing never disagree."""
    kind = TaskKind(kind)
    if not may_lease(user, kind):
        return 0
    count = sql.available(db.get_bind().dialect.name, True, _for_all(user, kind))
    row = count.first(db, {"user_id": user.id, "kind": kind.value, "cap": cap})
    return row.n if row is not None else 0


def _for_all(user: User, kind: TaskKind | None) -> bool:
    """Compare tasks kept for held-out judges are never offered to anyone else."""
    return kind == TaskKind.compare and not user.held_out


def _sweep_due() -> bool:
    """At most one lazy expiry sweep per process per second: it is a statement per lease."""
    global _last_sweep
    now = time.monotonic()
    if now - _last_sweep < _SWEEP_EVERY_S:
        return False
    _last_sweep = now
    return True


def _lease(db: Session, user: User, kind: TaskKind | None) -> Lease | None:
    now = utcnow()
    swept = _sweep_due() and _expire_some(db, now=now, limit=_SWEEP_LIMIT) >= 0
    held = _live_lease(db, user, kind, now)
    if held is not None:
        return held  # a reload must not burn another slot
    task = _pick(db, user, kind)
    if task is None and not swept and _expire_some(db, now=now, limit=_SWEEP_LIMIT):
        task = _pick(db, user, kind)  # the queue looked empty only because of lapsed leases
    return _new_assignment(db, user, task, now) if task is not None else None


def _pick(db: Session, user: User, kind: TaskKind | None) -> TaskRow | None:
    """Lock and claim a slot on the best task this user may take (a row of the task)."""
    pick = sql.pick(db.get_bind().dialect.name, kind is not None, _for_all(user, kind))
    params: dict[str, object] = {"user_id": user.id}
    if kind is not None:
        params["kind"] = kind.value
    deadline, races = time.monotonic() + _BUSY_WAIT_S, 0
    while True:
        task = pick.first(db, params)
        if task is not None:
            if sql.CLAIM.rowcount(db, {"task_id": task.id}) == 1:
                return task
            races += 1
            if races == 5:
                return None  # lost every race for a slot (SQLite only): the client asks again
            continue
        # SKIP LOCKED passes over a task another transaction holds for a moment (a lease, a
        # submission), so an empty pick may only mean "all of it busy this instant": a
        # labeler told there is no work would leave, and the task's last slot with them.
        # The count reads the same filter without locking: while it sees a free slot, ask
        # again shortly (bounded, so a lease still never waits on a lock for long).
        if time.monotonic() >= deadline or not _has_free_slot(db, user, kind, params):
            return None
        time.sleep(random.uniform(0.005, 0.02))


def _has_free_slot(db: Session, user: User, kind: TaskKind | None,
                   params: dict[str, object]) -> bool:
    count = sql.available(db.get_bind().dialect.name, kind is not None, _for_all(user, kind))
    row = count.first(db, {**params, "cap": 1})
    return row is not None and row.n > 0


def _live_lease(db: Session, user: User, kind: TaskKind | None, now: datetime) -> Lease | None:
    if kind is None:
        row = sql.LIVE_LEASE.first(db, {"user_id": user.id, "now": now})
    else:
        row = sql.LIVE_LEASE_OF_KIND.first(db, {"user_id": user.id, "now": now,
                                                "kind": kind.value})
    return None if row is None else Lease.of(row, row)  # the row has both


def _new_assignment(db: Session, user: User, task: TaskRow, now: datetime) -> Lease:
    order: list[int] = []
    if task.kind in (TaskKind.rank, TaskKind.rate):
        # Each labeler sees their own order, so position bias can be measured later.
        order = list(task.candidate_ids)
        random.shuffle(order)
    elif task.kind == TaskKind.compare:
        order = _compare_order(db, task)
    expires_at = now + _lease_delta()
    row = sql.INSERT_ASSIGNMENT.one(db, {
        "task_id": task.id, "user_id": user.id, "display_order": json.dumps(order),
        "now": now, "expires_at": expires_at})
    return Lease(id=row.id, task_id=task.id, kind=TaskKind(task.kind), prompt_id=task.prompt_id,
                 display_order=order, expires_at=expires_at, params=dict(task.params or {}))


def _compare_order(db: Session, task: TaskRow) -> list[int]:
    """Slots A and B of a compare task for its next labeler: each output is shown first to
    as many of the task's labelers as the other (give or take one); the task's random
    `first` bit breaks the tie, so neither output is first more often across tasks."""
    ids = list(task.candidate_ids)
    given = [list(r.display_order or ()) for r in sql.COMPARE_ORDERS.all(db, {"task_id": task.id})]
    as_is = sum(1 for o in given if o[:1] == ids[:1])
    flipped = len(given) - as_is
    if as_is == flipped:
        return ids[::-1] if (len(given) + int(task.params.get("first", 0))) % 2 else ids
    return ids if as_is < flipped else ids[::-1]


def get_assignment(*, db: Session, user: User, assignment_id: int) -> Assignment:
    """This user's assignment; 404 for anyone else's, so ids do not leak."""
    assignment = db.get(Assignment, assignment_id)
    if assignment is None or assignment.user_id != user.id:
        raise QueueError(f"No assignment {assignment_id} of yours.", status=404)
    return assignment


def lock_task(*, db: Session, task_id: int) -> TaskRow | None:
    """Lock a task's row and read it: the first lock of a submit (then `live_assignment`)."""
    return sql.LOCK_TASK.first(db, {"task_id": task_id})


def _lock(db: Session, user: User, assignment_id: int, task_id: int | None = None,
          task_locked: bool = False) -> AssignmentRow:
    """Lock the task row, then the assignment row (read as a row); 404 unless it is this
    user's."""
    if task_id is None:
        row = sql.TASK_OF_ASSIGNMENT.first(db, {"assignment_id": assignment_id})
        if row is None:
            raise QueueError(f"No assignment {assignment_id} of yours.", status=404)
        task_id = row.task_id
    if not task_locked:
        sql.LOCK_TASK.first(db, {"task_id": task_id})
    assignment = sql.LOCK_ASSIGNMENT.first(db, {"assignment_id": assignment_id})
    if assignment is None or assignment.user_id != user.id or assignment.task_id != task_id:
        raise QueueError(f"No assignment {assignment_id} of yours for task {task_id}.", status=404)
    return assignment


def _require_live(assignment: AssignmentRow, now: datetime) -> None:
    if assignment.state == AssignmentState.submitted:
        raise QueueError("This task was already submitted.", status=409)
    if assignment.state != AssignmentState.leased or assignment.expires_at <= now:
        raise QueueError(
            "Your lease on this task has expired or was given up; ask for the next task.",
            status=409,
        )


def live_assignment(*, db: Session, user: User, task_id: int, assignment_id: int,
                    task_locked: bool = False) -> AssignmentRow:
    """Lock task then assignment and check the lease is this user's and still live; the
    assignment's row.

    `task_locked=True` when the caller already holds the task row (`lock_task`).
    """
    assignment = _lock(db, user, assignment_id, task_id, task_locked)
    _require_live(assignment, utcnow())
    return assignment


def heartbeat(*, db: Session, user: User, assignment_id: int) -> Extended:
    """Extend a live lease while its page is open; the new (id, expires_at)."""
    assignment = _lock(db, user, assignment_id)
    now = utcnow()
    _require_live(assignment, now)
    return sql.EXTEND_LEASE.one(db, {"assignment_id": assignment_id,
                                     "expires_at": now + _lease_delta()})


def skip(*, db: Session, user: User, assignment_id: int, reason: str | None) -> None:
    """Give the task back; it is never offered to this user again."""
    assignment = _lock(db, user, assignment_id)
    if assignment.state == AssignmentState.skipped:
        return  # a repeated skip changes nothing
    if assignment.state != AssignmentState.leased:
        raise QueueError(f"This task is {assignment.state}; it cannot be skipped.", 409)
    sql.SKIP_ASSIGNMENT.rowcount(db, {"assignment_id": assignment_id, "now": utcnow(),
                                      "reason": (reason or "")[:200] or None})
    _release_slots(db, Counter([assignment.task_id]))


UNDO_SKIP_MINUTES = 15


def unskip(*, db: Session, user: User, assignment_id: int) -> Assignment:
    """Take back a recent skip: the lease is live again if the task still has a free slot."""
    assignment = _lock(db, user, assignment_id)
    if assignment.state == AssignmentState.leased:
        return db.get_one(Assignment, assignment_id)  # undone already
    if assignment.state != AssignmentState.skipped:
        raise QueueError(f"This task is {assignment.state}; only a skip can be undone.", 409)
    now = utcnow()
    row = db.get_one(Assignment, assignment_id, populate_existing=True)
    if row.finished_at is None or row.finished_at < now - timedelta(minutes=UNDO_SKIP_MINUTES):
        raise QueueError(f"A skip can be undone for {UNDO_SKIP_MINUTES} minutes; this one is "
                         "older.", 409)
    claimed = sql.CLAIM.rowcount(db, {"task_id": row.task_id})
    if claimed != 1:
        raise QueueError("Someone else took the last place on this task, so the skip cannot "
                         "be undone.", 409)
    row.state, row.finished_at, row.skip_reason = AssignmentState.leased, None, None
    row.leased_at, row.expires_at = now, now + _lease_delta()
    db.flush()
    return row


def complete(*, db: Session, assignment: AssignmentRow) -> None:
    """The submit's queue half: mark submitted, count it, close the task when its overlap is met.

    Call after `live_assignment` in the same transaction (it holds the locks).
    """
    now = utcnow()
    done = sql.SUBMIT_ASSIGNMENT.rowcount(db, {"assignment_id": assignment.id, "now": now})
    if done != 1:
        raise QueueError("This task was already submitted or its lease ended.", status=409)
    sql.COUNT_SUBMISSION.one(db, {"task_id": assignment.task_id, "now": now})


def _release_slots(db: Session, per_task: Counter[int]) -> None:
    for task_id, n in per_task.items():
        sql.RELEASE_SLOTS.rowcount(db, {"n": n, "task_id": task_id})


def _expire_some(db: Session, *, now: datetime, limit: int) -> int:
    """Expire up to `limit` lapsed leases whose task nobody holds; returns how many."""
    rows = sql.EXPIRED.all(db, {"now": now, "limit": limit})
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


def _client_params(db: Session, params: dict[str, Any]) -> dict[str, object]:
    """The task's params a labeler's client may see, with its use case spelled out."""
    shown: dict[str, object] = {k: v for k, v in params.items()
                                if k in ("prompt_kind", "use_case_id")}
    if params.get("use_case_id"):
        use_case = db.get(UseCase, params["use_case_id"])
        if use_case is not None:
            shown["use_case"] = {"name": use_case.name, "description": use_case.description}
    return shown


def task_payload(*, db: Session, assignment: Lease | Assignment) -> dict[str, object]:
    """What a labeler's client needs for an assignment; never the gold answer."""
    if isinstance(assignment, Assignment):
        task = db.get(Task, assignment.task_id)
        if task is None:
            raise QueueError(f"There is no task {assignment.task_id}.", status=404)
        assignment = Lease.of(assignment, task)
    prompt = sql.PROMPT_TEXT.first(db, {"prompt_id": assignment.prompt_id}) \
        if assignment.prompt_id is not None else None
    by_id: dict[int, str] = {}
    if assignment.display_order:
        by_id = dict(db.execute(_CANDIDATE_TEXTS, {"ids": assignment.display_order}).all())
    params = _client_params(db, assignment.params)
    return {
        "task_id": assignment.task_id, "assignment_id": assignment.id, "kind": assignment.kind,
        "prompt": {"id": prompt.id, "text": prompt.text} if prompt else None,
        "candidates": [
            {"id": cid, "text": by_id[cid]} for cid in assignment.display_order
            if cid in by_id
        ],
        "expires_at": assignment.expires_at, "params": params,
    }
