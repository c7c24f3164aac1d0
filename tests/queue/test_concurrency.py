"""32 labelers draining the queue at once on PostgreSQL: no task over- or under-collected."""

import threading
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
