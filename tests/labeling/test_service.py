"""Submissions through POST /api/v1/tasks/{id}/submit: validation, idempotency, storage."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.db import utcnow
from app.labeling.models import Demonstration, Ranking, Rating
from app.queue.models import Assignment, AssignmentState, Task, TaskKind, TaskState
from tests.factories import lease, login, make_task, make_user, rank_body


def _count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def _post(client, csrf, task, body):
    return client.post(f"/api/v1/tasks/{task.id}/submit", json=body,
                       headers={"X-CSRF-Token": csrf})


@pytest.fixture
def ranker(client, db):
    user = make_user(db)
    return user, login(client, user)


def test_submit_rank_stores_ranking_and_one_rating_per_output(client, db, ranker):
    user, csrf = ranker
    task = make_task(db, TaskKind.rank, k=5)
    a = lease(db, user, task)
    c = task.candidate_ids
    ranking = [[c[2]], [c[0], c[4]], [c[1]], [c[3]]]
    body = rank_body(a, task, ranking=ranking, flags=["hallucination", "expresses_opinion"])
    body["ratings"][str(c[1])] = {"likert": 2, "flags": ["harmful_advice"]}
    resp = _post(client, csrf, task, body)
    assert resp.status_code == 200, resp.text
    stored = db.scalars(select(Ranking)).one()
    assert resp.json() == {"id": stored.id, "kind": "rank", "task_id": task.id,
                           "assignment_id": a.id, "next_url": "/label/next?kind=rank"}
    assert stored.groups == ranking and stored.user_id == user.id
    assert stored.display_order == a.display_order and stored.seconds_spent == 42
    ratings = {r.candidate_id: r for r in db.scalars(select(Rating))}
    assert set(ratings) == set(c)
    assert all(r.ranking_id == stored.id and r.idempotency_key is None for r in ratings.values())
    assert (ratings[c[1]].likert, ratings[c[1]].flags) == (2, ["harmful_advice"])
    assert ratings[c[0]].flags == ["hallucination", "expresses_opinion"]
    db.refresh(a)
    assert a.state == AssignmentState.submitted


def _bad_rank_bodies():
    def missing(c):
        return {"ranking": [[x] for x in c[:-1]]}

    def duplicate(c):
        return {"ranking": [[c[0]], [c[1], c[0]], [c[2]], [c[3]]]}

    def foreign(c):
        return {"ranking": [[x] for x in c] + [[987654]]}

    def empty_group(c):
        return {"ranking": [[c[0]], [], [c[1]], [c[2]], [c[3]]]}

    def likert(value):
        return lambda c: {"ratings": {str(x): {"likert": value, "flags": []} for x in c}}

    def unknown_flag(c):
        return {"ratings": {str(x): {"likert": 4, "flags": ["rude"]} for x in c}}

    def rating_missing(c):
        return {"ratings": {str(x): {"likert": 4, "flags": []} for x in c[1:]}}

    return [
        ("not_a_partition", missing, "leaves out output"),
        ("duplicate_id", duplicate, "more than once"),
        ("foreign_candidate", foreign, "not one of this task's outputs"),
        ("empty_group", empty_group, "is empty"),
        ("likert_0", likert(0), "from 1 to 7, not 0"),
        ("likert_8", likert(8), "from 1 to 7, not 8"),
        ("unknown_flag", unknown_flag, "Unknown flag rude"),
        ("rating_missing", rating_missing, "Likert score from 1 to 7 for output"),
    ]


@pytest.mark.parametrize(("case", "change", "message"), _bad_rank_bodies(),
                         ids=[b[0] for b in _bad_rank_bodies()])
def test_submit_rank_rejects_invalid_body_and_stores_nothing(client, db, ranker, case, change,
                                                              message):
    user, csrf = ranker
    task = make_task(db, TaskKind.rank, k=4)
    a = lease(db, user, task)
    body = rank_body(a, task)
    body.update(change(task.candidate_ids))
    resp = _post(client, csrf, task, body)
    assert resp.status_code == 422, resp.text
    assert message in resp.json()["detail"]
    assert _count(db, Ranking) == 0 and _count(db, Rating) == 0
    db.refresh(a)
    assert a.state == AssignmentState.leased  # still the labeler's to fix and resubmit


def test_submit_demonstration_rejects_too_long_or_blank_text(client, db, ranker):
    user, csrf = ranker
    task = make_task(db, TaskKind.demonstrate)
    a = lease(db, user, task)
    base = {"assignment_id": a.id, "idempotency_key": "demo-key-1", "seconds_spent": 5}
    too_long = _post(client, csrf, task, {**base, "text": "x" * 20_001})
    assert too_long.status_code == 422 and "limit is 20,000" in too_long.json()["detail"]
    blank = _post(client, csrf, task, {**base, "text": "   \n"})
    assert blank.status_code == 422 and "empty" in blank.json()["detail"]
    assert _count(db, Demonstration) == 0


def test_submit_rejects_another_users_assignment(client, db, ranker):
    _, csrf = ranker
    other = make_user(db)
    task = make_task(db, TaskKind.rank)
    a = lease(db, other, task)
    resp = _post(client, csrf, task, rank_body(a, task))
    assert resp.status_code == 404
    assert _count(db, Ranking) == 0
    db.refresh(a)
    assert a.state == AssignmentState.leased


def test_submit_rejects_expired_lease(client, db, ranker):
    user, csrf = ranker
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    a.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    resp = _post(client, csrf, task, rank_body(a, task))
    assert resp.status_code == 409 and "expired" in resp.json()["detail"]
    assert _count(db, Ranking) == 0 and _count(db, Rating) == 0


def test_submit_same_key_twice_stores_one_row_and_same_answer(client, db, ranker):
    user, csrf = ranker
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    first = _post(client, csrf, task, rank_body(a, task))
    again = _post(client, csrf, task, rank_body(a, task))
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert _count(db, Ranking) == 1 and _count(db, Rating) == 4
    db.refresh(task)
    assert task.done_labels == 1


def test_submit_new_key_after_success_is_conflict(client, db, ranker):
    user, csrf = ranker
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    assert _post(client, csrf, task, rank_body(a, task)).status_code == 200
    resp = _post(client, csrf, task, rank_body(a, task, key="another-key-2"))
    assert resp.status_code == 409 and "already submitted" in resp.json()["detail"]
    assert _count(db, Ranking) == 1


def test_submit_key_reused_for_another_task_is_conflict(client, db, ranker):
    user, csrf = ranker
    t1, t2 = make_task(db, TaskKind.rank), make_task(db, TaskKind.rank)
    a1, a2 = lease(db, user, t1), lease(db, user, t2)
    assert _post(client, csrf, t1, rank_body(a1, t1)).status_code == 200
    resp = _post(client, csrf, t2, rank_body(a2, t2))
    assert resp.status_code == 409 and "another task" in resp.json()["detail"]
    assert _count(db, Ranking) == 1


def test_submit_closes_task_at_overlap(client, db):
    task = make_task(db, TaskKind.rank, overlap=2)
    for n in range(2):
        user = make_user(db)
        client.cookies.clear()
        csrf = login(client, user)
        a = lease(db, user, task)
        assert _post(client, csrf, task, rank_body(a, task, key=f"overlap-{n}-key")).is_success
        db.refresh(task)
        assert task.done_labels == n + 1
        assert task.state == (TaskState.closed if n == 1 else TaskState.open)
    assert _count(db, Ranking) == 2


def test_submit_demonstration_and_rate_store_their_rows(client, db, ranker):
    user, csrf = ranker
    demo, rate = make_task(db, TaskKind.demonstrate), make_task(db, TaskKind.rate)
    da, ra = lease(db, user, demo), lease(db, user, rate)
    text = "Line one.\n<b>not bold</b>"
    resp = _post(client, csrf, demo, {"assignment_id": da.id, "idempotency_key": "demo-key-9",
                                      "seconds_spent": 300, "text": text})
    assert resp.status_code == 200, resp.text
    stored = db.scalars(select(Demonstration)).one()
    assert (stored.text, stored.prompt_id, stored.seconds_spent) == (text, demo.prompt_id, 300)
    resp = _post(client, csrf, rate, {"assignment_id": ra.id, "idempotency_key": "rate-key-9",
                                      "seconds_spent": 20, "likert": 6,
                                      "flags": ["moral_judgment", "moral_judgment"],
                                      "comment": "Fine."})
    assert resp.status_code == 200, resp.text
    rating = db.scalars(select(Rating)).one()
    assert (rating.candidate_id, rating.likert, rating.flags, rating.comment) == (
        rate.candidate_ids[0], 6, ["moral_judgment"], "Fine.")
    assert rating.idempotency_key == "rate-key-9" and rating.ranking_id is None


def test_submit_checks_key_and_seconds(client, db, ranker):
    user, csrf = ranker
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    assert _post(client, csrf, task, rank_body(a, task, key="short")).status_code == 400
    body = rank_body(a, task)
    body["seconds_spent"] = -1
    assert _post(client, csrf, task, body).status_code == 400
    assert _post(client, csrf, task, {"assignment_id": a.id}).status_code == 422
    assert _count(db, Ranking) == 0


def test_submit_to_missing_task_is_404(client, db, ranker):
    _, csrf = ranker
    resp = client.post("/api/v1/tasks/424242/submit", headers={"X-CSRF-Token": csrf},
                       json={"assignment_id": 1, "idempotency_key": "abcdefgh",
                             "seconds_spent": 1, "text": "x"})
    assert resp.status_code == 404


def test_submit_without_csrf_token_is_refused(client, db, ranker):
    user, _ = ranker
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    resp = client.post(f"/api/v1/tasks/{task.id}/submit", json=rank_body(a, task))
    assert resp.status_code == 403
    assert _count(db, Ranking) == 0


def test_submit_by_bearer_token_works_without_csrf(client, db):
    from app.auth import service as auth

    user = make_user(db)
    _, token = auth.create_token(db=db, user=user, name="script")
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    resp = client.post(f"/api/v1/tasks/{task.id}/submit", json=rank_body(a, task),
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text


@pytest.mark.postgres_only
def test_concurrent_identical_submits_store_one_row(committed_db):
    """Two requests with the same key racing: one row, both answered with it."""
    from concurrent.futures import ThreadPoolExecutor

    from app.db import session_scope
    from app.labeling import service
    from app.labeling.schemas import SubmissionCreate

    db = committed_db
    user = make_user(db)
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    body = SubmissionCreate.model_validate(rank_body(a, task, key="race-key-123"))
    db.commit()

    def one(_: int) -> int:
        with session_scope() as s:
            return service.submit(db=s, user=s.get(type(user), user.id), task_id=task.id,
                                  body=body).id

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(one, range(4)))
    assert len(set(ids)) == 1
    assert _count(db, Ranking) == 1 and _count(db, Rating) == 4
    assert db.scalar(select(Task.done_labels).where(Task.id == task.id)) == 1
    assert db.scalar(select(Assignment.state).where(Assignment.id == a.id)) == "submitted"


def test_submit_write_prompt_creates_labeler_prompt_once(client, db, ranker):
    from app.labeling.models import WrittenPrompt
    from app.prompts.models import Prompt, PromptSource

    user, csrf = ranker
    task = make_task(db, TaskKind.write_prompt, params={"prompt_kind": "few_shot"})
    a = lease(db, user, task)
    body = {"assignment_id": a.id, "idempotency_key": "write-key-1", "seconds_spent": 60,
            "text": "Turn each word into its opposite.", "prompt_kind": "few_shot",
            "examples": [{"input": "hot", "output": "cold"}, {"input": "up", "output": "down"}]}
    resp = _post(client, csrf, task, body)
    assert resp.status_code == 200, resp.text
    assert _post(client, csrf, task, body).json() == resp.json()
    written = db.scalars(select(WrittenPrompt)).one()
    prompt = db.get(Prompt, written.prompt_id)
    assert prompt.source == PromptSource.labeler and prompt.created_by_id == user.id
    assert prompt.text == ("Turn each word into its opposite.\n\nInput: hot\nOutput: cold"
                           "\n\nInput: up\nOutput: down")
    assert written.prompt_kind == "few_shot"


def test_submit_write_prompt_refuses_wrong_kind_and_missing_examples(client, db, ranker):
    from app.labeling.models import WrittenPrompt

    user, csrf = ranker
    task = make_task(db, TaskKind.write_prompt, params={"prompt_kind": "few_shot"})
    a = lease(db, user, task)
    base = {"assignment_id": a.id, "idempotency_key": "write-key-2", "seconds_spent": 6,
            "text": "Do a thing."}
    wrong = _post(client, csrf, task, {**base, "prompt_kind": "plain"})
    assert wrong.status_code == 422 and "few_shot" in wrong.json()["detail"]
    bare = _post(client, csrf, task, {**base, "prompt_kind": "few_shot"})
    assert bare.status_code == 422 and "example" in bare.json()["detail"]
    assert _count(db, WrittenPrompt) == 0


def test_done_today_counts_own_submissions_since_midnight_only(client, db, ranker):
    from app.labeling import workbench

    user, csrf = ranker
    other = make_user(db)
    tasks = [make_task(db, TaskKind.demonstrate) for _ in range(4)]
    leases = [lease(db, user, t) for t in tasks[:3]] + [lease(db, other, tasks[3])]
    for n in (0, 1):
        resp = _post(client, csrf, tasks[n], {"assignment_id": leases[n].id,
                                             "idempotency_key": f"done-today-{n}",
                                             "seconds_spent": 5, "text": "Done."})
        assert resp.status_code == 200, resp.text
    leases[3].state, leases[3].finished_at = AssignmentState.submitted, utcnow()  # not ours
    assert workbench.done_today(db=db, user=user) == 2  # the third is still only leased
    db.get(Assignment, leases[0].id).finished_at = utcnow() - timedelta(days=1)
    db.flush()
    assert workbench.done_today(db=db, user=user) == 1
    page = client.get(f"/label/a/{leases[2].id}")
    assert 'id="done-today">1<' in page.text


def test_write_prompt_submit_is_one_unit_even_when_its_savepoint_starts_the_transaction(
        committed_db):
    """On SQLite a savepoint can be what begins the transaction, and then its release
    commits: the prompt must never be stored without its assignment being counted."""
    from app.labeling import service
    from app.labeling.models import WrittenPrompt
    from app.labeling.schemas import SubmissionCreate
    from app.prompts.models import Prompt

    user = make_user(committed_db)
    task = make_task(committed_db, TaskKind.write_prompt)
    a = lease(committed_db, user, task)
    committed_db.commit()
    body = SubmissionCreate(assignment_id=a.id, idempotency_key="one-unit-1", seconds_spent=9,
                            text="Name three rivers of Africa.")
    service.submit(db=committed_db, user=user, task_id=task.id, body=body)
    committed_db.rollback()  # the request fails after the submit, before its commit
    stored = _count(committed_db, Prompt), _count(committed_db, WrittenPrompt)
    state = committed_db.scalar(select(Assignment.state).where(Assignment.id == a.id))
    done = committed_db.scalar(select(Task.done_labels).where(Task.id == task.id))
    assert (stored, state, done) in (((0, 0), AssignmentState.leased, 0),
                                     ((1, 1), AssignmentState.submitted, 1))
