"""The database refuses writes that break the queue's and the labels' invariants, whatever
code sends them (migration 0007_invariants), on PostgreSQL and SQLite alike."""

import threading
import uuid

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import SessionLocal
from app.labeling import service as labeling
from app.labeling.models import Rating
from app.labeling.schemas import SubmissionCreate
from app.prompts.models import Candidate, Prompt
from app.queue.models import Assignment, Task, TaskKind
from tests.factories import lease, make_task, make_user, rank_body


def _refused(db: Session, statement: object, params: dict | None = None) -> None:
    with pytest.raises(IntegrityError), db.begin_nested():
        db.execute(statement, params or {})  # type: ignore[call-overload]


@pytest.mark.parametrize("values", [
    {"required_labels": 0},
    {"done_labels": -1},
    {"leased_labels": -1},
    {"done_labels": 2, "leased_labels": 1},  # more slots used than the overlap of 2
    {"kind": "judge"},
    {"state": "paused"},
])
def test_task_counters_and_enums_are_checked(db, values):
    task = make_task(db, TaskKind.demonstrate, overlap=2)
    _refused(db, update(Task).where(Task.id == task.id).values(**values)
             .execution_options(synchronize_session=False))


def test_a_task_at_its_limits_is_accepted(db):
    task = make_task(db, TaskKind.demonstrate, overlap=2)
    db.execute(update(Task).where(Task.id == task.id).values(done_labels=1, leased_labels=1)
               .execution_options(synchronize_session=False))


@pytest.mark.parametrize(("table", "column", "value"), [
    ("assignments", "state", "lost"),
    ("users", "role", "superuser"),
    ("prompts", "source", "scraped"),
    ("prompts", "split", "holdout"),
])
def test_enum_columns_refuse_unknown_values(db, table, column, value):
    user = make_user(db)
    task = make_task(db, TaskKind.demonstrate)
    row_id = {"assignments": lambda: lease(db, user, task).id, "users": lambda: user.id,
              "prompts": lambda: task.prompt_id}[table]()
    _refused(db, text(f"UPDATE {table} SET {column} = :v WHERE id = :id"),
             {"v": value, "id": row_id})


def _rate(db: Session) -> tuple[User, Task, Assignment]:
    user = make_user(db)
    task = make_task(db, TaskKind.rate)
    return user, task, lease(db, user, task)


def _rating(task: Task, assignment: Assignment, **values: object) -> dict:
    return {"task_id": task.id, "assignment_id": assignment.id, "user_id": assignment.user_id,
            "candidate_id": task.candidate_ids[0], "likert": 4, "flags": [], "comment": "",
            "seconds_spent": 1, "idempotency_key": uuid.uuid4().hex, **values}


@pytest.mark.parametrize("likert", [0, 8, -3])
def test_likert_outside_1_to_7_is_refused(db, likert):
    _user, task, assignment = _rate(db)
    _refused(db, Rating.__table__.insert(), _rating(task, assignment, likert=likert))


def test_one_rating_per_rate_assignment(db):
    _user, task, assignment = _rate(db)
    db.execute(Rating.__table__.insert(), _rating(task, assignment))
    _refused(db, Rating.__table__.insert(), _rating(task, assignment))


def test_one_rating_per_output_of_a_ranking(db):
    user = make_user(db)
    task = make_task(db, TaskKind.rank, k=4)
    assignment = lease(db, user, task)
    resp = labeling.submit(db=db, user=user, task_id=task.id,
                           body=SubmissionCreate(**rank_body(assignment, task)))
    first = db.query(Rating).filter(Rating.ranking_id == resp.id).first()
    assert first is not None
    _refused(db, Rating.__table__.insert(), _rating(
        task, assignment, ranking_id=resp.id, candidate_id=first.candidate_id,
        idempotency_key=None))


@pytest.mark.parametrize("what", ["user", "prompt", "output"])
def test_deleting_a_labelers_user_prompt_or_rated_output_is_refused(db, what):
    user, task, assignment = _rate(db)
    db.execute(Rating.__table__.insert(), _rating(task, assignment))
    statement = {"user": delete(User).where(User.id == user.id),
                 "prompt": delete(Prompt).where(Prompt.id == task.prompt_id),
                 "output": delete(Candidate).where(Candidate.id == task.candidate_ids[0])}[what]
    _refused(db, statement.execution_options(synchronize_session=False))


def _submit_rate(user_id: int, task_id: int, assignment_id: int, key: str) -> object:
    with SessionLocal() as db:
        user = db.get(User, user_id)
        assert user is not None
        try:
            answer = labeling.submit(db=db, user=user, task_id=task_id, body=SubmissionCreate(
                assignment_id=assignment_id, idempotency_key=key, seconds_spent=3, likert=5))
        except labeling.SubmissionError as exc:
            db.rollback()
            return exc
        db.commit()
        return answer


def test_two_concurrent_submits_of_one_rate_lease_store_one_rating(committed_db):
    """The second submit, sent with another key while the first is in flight, gets 409
    (on SQLite it was an uncaught error: a 500)."""
    db = committed_db
    user, task, assignment = _rate(db)
    ids = (user.id, task.id, assignment.id)
    db.commit()

    with SessionLocal() as first:
        owner = first.get(User, ids[0])
        assert owner is not None
        labeling.submit(db=first, user=owner, task_id=ids[1], body=SubmissionCreate(
            assignment_id=ids[2], idempotency_key="first-key-0001", seconds_spent=3, likert=4))
        results: list[object] = []
        second = threading.Thread(target=lambda: results.append(
            _submit_rate(*ids, key="second-key-0002")))
        second.start()
        second.join(timeout=0.5)  # it waits for the first one's lock (or has read the lease)
        first.commit()
    second.join(timeout=60)

    assert len(results) == 1 and isinstance(results[0], labeling.SubmissionError)
    assert results[0].status == 409
    db.expire_all()
    stored = db.query(Rating).filter(Rating.assignment_id == ids[2]).all()
    assert [r.idempotency_key for r in stored] == ["first-key-0001"]
    task_row = db.get(Task, ids[1])
    assert task_row is not None and (task_row.done_labels, task_row.leased_labels) == (1, 0)
