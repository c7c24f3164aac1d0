"""The queue API and tasks page over HTTP."""

from app.auth import service as auth
from app.auth.models import Role
from app.queue.models import Task, TaskKind
from tests.factories import login, make_candidates, make_prompt, make_task, make_user


def _bearer(db, user) -> dict[str, str]:
    _, clear = auth.create_token(db=db, user=user, name="test")
    return {"Authorization": f"Bearer {clear}"}


def test_next_returns_contract_shape_with_display_order(client, db):
    task = make_task(db, TaskKind.rank, gold=True, gold_answer=[[1], [2]])
    headers = _bearer(db, make_user(db))
    resp = client.get("/api/v1/tasks/next", params={"kind": "rank"}, headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {"task_id", "assignment_id", "kind", "prompt", "candidates", "expires_at"} <= set(body)
    assert body["task_id"] == task.id and body["kind"] == "rank"
    assert sorted(c["id"] for c in body["candidates"]) == sorted(task.candidate_ids)
    assert "gold" not in resp.text and "gold_answer" not in body
    again = client.get("/api/v1/tasks/next", params={"kind": "rank"}, headers=headers)
    assert again.json()["assignment_id"] == body["assignment_id"]
    assert [c["id"] for c in again.json()["candidates"]] == [c["id"] for c in body["candidates"]]


def test_next_returns_204_when_nothing_to_do(client, db):
    resp = client.get("/api/v1/tasks/next", headers=_bearer(db, make_user(db)))
    assert resp.status_code == 204 and resp.content == b""


def test_next_rejects_unknown_kind(client, db):
    resp = client.get("/api/v1/tasks/next", params={"kind": "nap"},
                      headers=_bearer(db, make_user(db)))
    assert resp.status_code == 422


def test_heartbeat_and_skip_over_http(client, db):
    make_task(db, overlap=2)
    user = make_user(db)
    headers = _bearer(db, user)
    lease = client.get("/api/v1/tasks/next", headers=headers).json()
    beat = client.post(f"/api/v1/assignments/{lease['assignment_id']}/heartbeat", headers=headers)
    assert beat.status_code == 200 and beat.json()["expires_at"] >= lease["expires_at"]
    other = _bearer(db, make_user(db))
    stolen = client.post(f"/api/v1/assignments/{lease['assignment_id']}/skip", headers=other)
    assert stolen.status_code == 404
    skipped = client.post(f"/api/v1/assignments/{lease['assignment_id']}/skip",
                          json={"reason": "not my language"}, headers=headers)
    assert skipped.status_code == 200 and skipped.json()["state"] == "skipped"
    assert client.get("/api/v1/tasks/next", headers=headers).status_code == 204
    late = client.post(f"/api/v1/assignments/{lease['assignment_id']}/heartbeat", headers=headers)
    assert late.status_code == 409


def test_bulk_creates_rank_tasks_and_refuses_bad_sets(client, db):
    prompt = make_prompt(db)
    ids = [c.id for c in make_candidates(db, prompt, 5)]
    headers = _bearer(db, make_user(db, Role.researcher))
    ok = client.post("/api/v1/tasks/bulk", headers=headers, json={
        "kind": "rank", "overlap": 3, "rank": [{"prompt_id": prompt.id, "candidate_ids": ids}]})
    assert ok.status_code == 201, ok.text
    assert db.get(Task, ok.json()["task_ids"][0]).required_labels == 3
    bad = client.post("/api/v1/tasks/bulk", headers=headers, json={
        "kind": "rank", "rank": [{"prompt_id": prompt.id, "candidate_ids": ids[:4] + [ids[0]]}]})
    assert bad.status_code == 400 and "once" in bad.json()["detail"]


def test_bulk_is_staff_only(client, db):
    resp = client.post("/api/v1/tasks/bulk", headers=_bearer(db, make_user(db)),
                       json={"kind": "demonstrate"})
    assert resp.status_code == 403


def test_tasks_page_creates_demonstrate_tasks(client, db):
    make_prompt(db)
    csrf = login(client, make_user(db, Role.researcher))
    resp = client.post("/tasks/demonstrate", data={"overlap": 2, "priority": 1,
                                                   "csrf_token": csrf}, follow_redirects=True)
    assert resp.status_code == 200 and "Created 1 demonstrate tasks" in resp.text
    assert "demonstrate" in resp.text and 'id="task-stats"' in resp.text


def test_tasks_page_title_is_plain_text(client, db):
    login(client, make_user(db, Role.researcher))
    page = client.get("/tasks").text
    assert "<title>Tasks · RLHF Studio</title>" in page
    assert page.count('id="recent-tasks"') == 1


def test_activity_counts_recent_submissions_and_who_is_working(client, db):
    from datetime import timedelta

    from app.db import utcnow
    from tests.factories import finished, lease

    task, other = make_task(db, TaskKind.rate, overlap=5), make_task(db, TaskKind.rate)
    a, b, c, old = (make_user(db) for _ in range(4))
    finished(db, task, a)
    finished(db, other, a, at=utcnow() - timedelta(minutes=1))
    finished(db, task, old, at=utcnow() - timedelta(hours=3))  # outside the window
    lease(db, b, task)  # working on one now
    lease(db, c, task, minutes=-1)  # a lease that ran out
    login(client, make_user(db, Role.labeler))
    assert client.get("/api/v1/tasks/activity").status_code == 403
    client.cookies.clear()
    login(client, make_user(db, Role.researcher))
    got = client.get("/api/v1/tasks/activity").json()
    assert (got["submitted"], got["active_labelers"], got["leased_now"]) == (2, 2, 1)
    assert got["per_minute"] == round(2 / got["window_minutes"], 2)
    page = client.get("/tasks").text
    assert 'id="active-labelers">2<' in page and "/static/tasks.js" in page
