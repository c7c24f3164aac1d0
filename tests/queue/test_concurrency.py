"""32 labelers draining the queue at once on PostgreSQL: no task over- or under-collected."""

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import select

from app.db import SessionLocal
from app.queue import service as queue
from app.queue.models import Assignment, AssignmentState, Task, TaskKind, TaskState
from tests.factories import make_prompt, make_user

WORKERS, TASKS, OVERLAP = 32, 200, 3


def _drain(user_id: int, errors: list[BaseException], start: threading.Barrier) -> None:
    from app.auth.models import User

    start.wait()
    with SessionLocal() as db:
        user = db.get(User, user_id)
        try:
            while True:
                lease = queue.next_task(db=db, user=user, kind=TaskKind.demonstrate)
                if lease is None:
                    db.commit()
                    return
                live = queue.live_assignment(db=db, user=user, task_id=lease.task_id,
                                             assignment_id=lease.id)
                queue.complete(db=db, assignment=live)
                db.commit()
        except BaseException as exc:  # reported by the main thread
            db.rollback()
            errors.append(exc)


@pytest.mark.postgres_only
def test_concurrent_workers_drain_every_task_exactly_to_overlap(committed_db):
    db = committed_db
    prompts = [make_prompt(db) for _ in range(TASKS)]
    db.add_all(Task(kind=TaskKind.demonstrate, prompt_id=p.id, candidate_ids=[],
                    required_labels=OVERLAP, params={}) for p in prompts)
    user_ids = [make_user(db).id for _ in range(WORKERS)]
    db.commit()

    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS)
    threads = [threading.Thread(target=_drain, args=(uid, errors, start)) for uid in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]

    db.expire_all()
    submitted = db.execute(
        select(Assignment.task_id, Assignment.user_id)
        .where(Assignment.state == AssignmentState.submitted)
    ).all()
    per_task = Counter(task_id for task_id, _ in submitted)
    assert len(per_task) == TASKS and set(per_task.values()) == {OVERLAP}
    assert len(set(submitted)) == len(submitted)  # 3 different users per task
    tasks = db.scalars(select(Task)).all()
    assert {(t.state, t.done_labels, t.leased_labels) for t in tasks} == {
        (TaskState.closed, OVERLAP, 0)
    }
    assert db.scalar(select(Assignment.id).where(Assignment.state != AssignmentState.submitted)) \
        is None


def _lease_in_thread(user_id: int, out: list) -> threading.Thread:  # type: ignore[type-arg]
    from app.auth.models import User

    def run() -> None:
        with SessionLocal() as db:
            started = time.monotonic()
            lease = queue.next_task(db=db, user=db.get(User, user_id), kind=TaskKind.demonstrate)
            db.commit()
            out.append((lease, time.monotonic() - started))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.postgres_only
@pytest.mark.parametrize("held_s", [0.15, 3.0])
def test_a_task_held_for_a_moment_by_another_transaction_is_still_leased(committed_db, held_s):
    """SKIP LOCKED passes over a task another transaction holds (a submission counting its
    label, another lease): next_task must not call the queue empty while that task still
    has a free slot, yet it waits only briefly for a task held for long."""
    db = committed_db
    task = Task(kind=TaskKind.demonstrate, prompt_id=make_prompt(db).id, candidate_ids=[],
                required_labels=1, params={})
    db.add(task)
    user_id = make_user(db).id
    db.commit()
    with SessionLocal() as other:  # holds the task's row as a submission would
        other.execute(select(Task).where(Task.id == task.id).with_for_update())
        out: list = []  # type: ignore[type-arg]
        thread = _lease_in_thread(user_id, out)
        time.sleep(held_s)
        other.rollback()
    thread.join(timeout=10)
    lease, waited = out[0]
    if held_s < 0.5:
        assert lease is not None and lease.task_id == task.id
    else:
        assert lease is None and waited < 2.0
