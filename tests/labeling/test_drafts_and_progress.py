"""Drafts of every task kind, submitted tasks read-only, per-user counts and undoing a skip."""

import json
import re
from datetime import timedelta

from sqlalchemy import select

from app.db import utcnow
from app.queue.models import Assignment, AssignmentState, Task, TaskKind
from tests.factories import lease, login, make_task, make_user, rank_body


def _restore(html: str) -> dict | None:
    found = re.search(r'<script type="application/json" id="restore">(.*?)</script>', html, re.S)
    assert found, "task page has no restore data"
    return json.loads(found.group(1))


def test_rank_draft_is_restored_on_another_device(client, db, app):
    user = make_user(db)
    csrf = login(client, user)
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    c1, c2 = task.candidate_ids[:2]
    data = {"likert": {str(c1): 6, str(c2): 2}, "flags": {str(c1): ["hallucination"]},
            "ranking": [[c1, c2]]}
    resp = client.put(f"/api/v1/assignments/{a.id}/draft",
                      json={"data": data, "client_ms": 5}, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200 and resp.json()["data"] == data
    client.cookies.clear()
    login(client, user)  # a second session: another browser or device
    page = client.get(f"/label/a/{a.id}")
    assert page.headers["cache-control"] == "no-store"
    assert _restore(page.text) == {"text": "", "data": data, "client_ms": 5}
    # A save without `data` (text only) leaves the form's data as it was.
    client.put(f"/api/v1/assignments/{a.id}/draft", json={"text": "", "client_ms": 6},
               headers={"X-CSRF-Token": csrf_of(client)})
    assert client.get(f"/api/v1/assignments/{a.id}/draft").json()["data"] == data


def csrf_of(client) -> str:  # type: ignore[no-untyped-def]
    from tests.factories import csrf_from

    return csrf_from(client.get("/account").text)


def test_submitted_task_is_read_only_and_shows_what_was_sent(client, db):
    user = make_user(db)
    csrf = login(client, user)
    h = {"X-CSRF-Token": csrf}
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    url = f"/api/v1/assignments/{a.id}/draft"
    assert client.put(url, json={"data": {"ranking": [[task.candidate_ids[3]]]},
                                 "client_ms": 1}, headers=h).status_code == 200
    body = rank_body(a, task, ranking=[[task.candidate_ids[0], task.candidate_ids[1]],
                                       [task.candidate_ids[2]], [task.candidate_ids[3]]],
                     likert=3, flags=["hallucination"])
    assert client.post(f"/api/v1/tasks/{task.id}/submit", json=body, headers=h).status_code == 200

    late = client.put(url, json={"text": "edited after", "data": {"ranking": []},
                                 "client_ms": 99}, headers=h)
    assert late.status_code == 409 and "already submitted" in late.json()["detail"]
    assert client.get(url).json()["data"] == {}
    page = client.get(f"/label/a/{a.id}")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'data-submitted="1"' in page.text and "You submitted this task" in page.text
    shown = _restore(page.text)["data"]
    assert shown["ranking"] == body["ranking"]
    assert shown["likert"] == {str(c): 3 for c in task.candidate_ids}
    assert shown["flags"][str(task.candidate_ids[0])] == ["hallucination"]
    assert 'id="skip-form"' not in page.text


def test_rate_and_prompt_answers_are_shown_after_submit(client, db):
    user = make_user(db)
    h = {"X-CSRF-Token": login(client, user)}
    rate = make_task(db, TaskKind.rate)
    a = lease(db, user, rate)
    client.post(f"/api/v1/tasks/{rate.id}/submit", headers=h, json={
        "assignment_id": a.id, "idempotency_key": "rate-key-1", "seconds_spent": 3,
        "likert": 5, "flags": ["expresses_opinion"], "comment": "<b>fine</b>"})
    page = client.get(f"/label/a/{a.id}")
    cid = str(rate.candidate_ids[0])
    assert _restore(page.text)["data"] == {
        "likert": {cid: 5}, "flags": {cid: ["expresses_opinion"]}, "comment": "<b>fine</b>"}
    assert "<b>fine</b>" not in page.text  # inside JSON too, markup stays escaped

    wp = make_task(db, TaskKind.write_prompt, params={"prompt_kind": "plain"})
    b = lease(db, user, wp)
    assert client.post(f"/api/v1/tasks/{wp.id}/submit", headers=h, json={
        "assignment_id": b.id, "idempotency_key": "prompt-key-1", "seconds_spent": 3,
        "text": "Write a haiku about tea.", "prompt_kind": "plain"}).status_code == 200
    page = client.get(f"/label/a/{b.id}")
    assert _restore(page.text)["text"] == "Write a haiku about tea."
    mine = client.get("/label/mine").text
    assert f'href="/label/a/{a.id}"' in mine and f'href="/label/a/{b.id}"' in mine


def test_counts_are_what_this_user_can_lease(client, db):
    make_task(db, TaskKind.rank)
    make_task(db, TaskKind.rank)
    make_task(db, TaskKind.rate)
    login(client, make_user(db, held_out=True))
    page = client.get("/label").text
    rank_tile = page[page.index('id="pick-rank"'):page.index('id="pick-rate"')]
    rate_tile = page[page.index('id="pick-rate"'):page.index('id="pick-write_prompt"')]
    assert ">0 <" in rank_tile and ">1 <" in rate_tile
    client.cookies.clear()
    login(client, make_user(db))
    page = client.get("/label").text
    assert ">2 <" in page[page.index('id="pick-rank"'):page.index('id="pick-rate"')]


def test_every_live_lease_is_listed_on_the_start_page(client, db):
    user = make_user(db)
    login(client, user)
    a = lease(db, user, make_task(db, TaskKind.rank))
    b = lease(db, user, make_task(db, TaskKind.demonstrate))
    page = client.get("/label").text
    assert f'href="/label/a/{a.id}"' in page and f'href="/label/a/{b.id}"' in page


def test_skip_can_be_undone_while_the_slot_is_free(client, db):
    user = make_user(db)
    csrf = login(client, user)
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    h = {"X-CSRF-Token": csrf}
    assert client.post(f"/api/v1/assignments/{a.id}/skip", json={"reason": "Cannot judge"},
                       headers=h).status_code == 200
    page = client.get(f"/label/next?kind=rank&skipped={a.id}")
    assert f'action="/label/a/{a.id}/unskip"' in page.text
    resp = client.post(f"/label/a/{a.id}/unskip", data={"csrf_token": csrf},
                       follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == f"/label/a/{a.id}"
    db.expire_all()
    row = db.get(Assignment, a.id)
    assert row.state == AssignmentState.leased and row.skip_reason is None
    assert db.get(Task, task.id).leased_labels == 1
    assert 'data-live="1"' in client.get(f"/label/a/{a.id}").text


def test_skip_cannot_be_undone_once_the_slot_is_taken_or_too_late(client, db):
    user, other = make_user(db), make_user(db)
    csrf = login(client, user)
    h = {"X-CSRF-Token": csrf}
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    client.post(f"/api/v1/assignments/{a.id}/skip", json={}, headers=h)
    lease(db, other, task)  # the one slot is someone else's now
    resp = client.post(f"/label/a/{a.id}/unskip", data={"csrf_token": csrf},
                       follow_redirects=True)
    assert "Someone else took the last place" in resp.text
    old = make_task(db, TaskKind.rate)
    b = lease(db, user, old)
    client.post(f"/api/v1/assignments/{b.id}/skip", json={}, headers=h)
    db.expire_all()
    db.get(Assignment, b.id).finished_at = utcnow() - timedelta(hours=1)
    db.flush()
    resp = client.post(f"/label/a/{b.id}/unskip", data={"csrf_token": csrf},
                       follow_redirects=True)
    assert "can be undone for 15 minutes" in resp.text
    db.expire_all()
    states = db.scalars(select(Assignment.state).where(Assignment.user_id == user.id)).all()
    assert set(states) == {AssignmentState.skipped}
