"""The /label pages, drafts, prompt flags and guidelines through the HTTP app."""

from sqlalchemy import func, select

from app.auth.models import Role
from app.labeling.models import Draft, PromptFlag
from app.queue.models import Assignment, AssignmentState, TaskKind
from tests.factories import lease, login, make_task, make_user, rank_body


def test_next_page_leases_and_shows_outputs_escaped_in_display_order(client, db):
    user = make_user(db)
    login(client, user)
    task = make_task(db, TaskKind.rank, texts=["<script>x()</script>", "b\nc", "d", "e"])
    resp = client.get("/label/next?kind=rank", follow_redirects=False)
    assert resp.status_code == 303
    page = client.get(resp.headers["location"])
    assert page.status_code == 200
    assert "&lt;script&gt;x()&lt;/script&gt;" in page.text and "<script>x()" not in page.text
    assignment = db.scalars(select(Assignment).where(Assignment.user_id == user.id)).one()
    positions = [page.text.index(f'id="out-{cid}"') for cid in assignment.display_order]
    assert positions == sorted(positions) and sorted(assignment.display_order) == sorted(
        task.candidate_ids)


def test_next_page_without_work_says_so(client, db):
    login(client, make_user(db))
    resp = client.get("/label/next?kind=rate")
    assert resp.status_code == 200 and "There is no rate task for you right now" in resp.text


def test_task_page_of_another_labeler_is_not_found(client, db):
    owner = make_user(db)
    a = lease(db, owner, make_task(db, TaskKind.demonstrate))
    login(client, make_user(db))
    resp = client.get(f"/label/a/{a.id}")
    assert resp.status_code == 404


def test_draft_keeps_the_newest_text(client, db):
    user = make_user(db)
    csrf = login(client, user)
    a = lease(db, user, make_task(db, TaskKind.demonstrate))
    url = f"/api/v1/assignments/{a.id}/draft"
    h = {"X-CSRF-Token": csrf}
    assert client.put(url, json={"text": "newer", "client_ms": 2000}, headers=h).json()["saved"]
    late = client.put(url, json={"text": "older", "client_ms": 1000}, headers=h).json()
    assert late == {"assignment_id": a.id, "text": "newer", "data": {}, "client_ms": 2000,
                    "saved": False}
    assert client.get(url).json()["text"] == "newer"
    assert "newer" in client.get(f"/label/a/{a.id}").text


def test_draft_survives_skip_and_shows_on_my_work(client, db):
    user = make_user(db)
    csrf = login(client, user)
    a = lease(db, user, make_task(db, TaskKind.demonstrate))
    h = {"X-CSRF-Token": csrf}
    client.put(f"/api/v1/assignments/{a.id}/draft", json={"text": "A long answer", "client_ms": 1},
               headers=h)
    assert client.post(f"/api/v1/assignments/{a.id}/skip", json={}, headers=h).is_success
    db.refresh(a)
    assert a.state == AssignmentState.skipped
    assert "A long answer" in client.get("/label/mine").text


def test_draft_of_another_labeler_is_refused(client, db):
    a = lease(db, make_user(db), make_task(db, TaskKind.demonstrate))
    csrf = login(client, make_user(db))
    resp = client.put(f"/api/v1/assignments/{a.id}/draft", json={"text": "x"},
                      headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 404
    assert db.scalar(select(func.count()).select_from(Draft)) == 0


def test_flag_prompt_twice_stores_one_flag(client, db):
    user = make_user(db)
    csrf = login(client, user)
    task = make_task(db, TaskKind.rank)
    a = lease(db, user, task)
    url, h = f"/api/v1/assignments/{a.id}/flags", {"X-CSRF-Token": csrf}
    assert client.post(url, json={"reason": "pii", "comment": "a phone number"},
                       headers=h).status_code == 200
    assert client.post(url, json={"reason": "pii"}, headers=h).status_code == 200
    assert client.post(url, json={"reason": "spam"}, headers=h).status_code == 422
    flag = db.scalars(select(PromptFlag)).one()
    assert (flag.prompt_id, flag.reason, flag.comment) == (task.prompt_id, "pii",
                                                           "a phone number")


def test_admin_guidelines_show_on_task_pages_with_html_escaped(client, db):
    admin = make_user(db, Role.admin)
    csrf = login(client, admin)
    resp = client.post("/label/guidelines", data={
        "csrf_token": csrf, "kind": "rank", "body": "**Prefer honesty.** <img src=x onerror=y>"},
        follow_redirects=False)
    assert resp.status_code == 303
    client.cookies.clear()
    user = make_user(db)
    login(client, user)
    a = lease(db, user, make_task(db, TaskKind.rank))
    page = client.get(f"/label/a/{a.id}").text
    assert "<strong>Prefer honesty.</strong>" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=y&gt;" in page


def test_guidelines_page_is_for_admins_only(client, db):
    csrf = login(client, make_user(db))
    assert client.get("/label/guidelines").status_code == 403
    resp = client.post("/label/guidelines", data={"csrf_token": csrf, "kind": "rank",
                                                  "body": "x"})
    assert resp.status_code == 403


def _submit_ranks(client, db, user, csrf: str, n: int, tag: str) -> None:  # type: ignore[no-untyped-def]
    """n rank tasks leased to the user and submitted through the API."""
    for i in range(n):
        task = make_task(db, TaskKind.rank)
        a = lease(db, user, task)
        body = rank_body(a, task, key=f"{tag}-{user.id}-{i}-key")
        assert client.post(f"/api/v1/tasks/{task.id}/submit", json=body,
                           headers={"X-CSRF-Token": csrf}).status_code == 200


def test_my_work_counts_only_own_submissions(client, db):
    me, other = make_user(db), make_user(db)
    for user, n in ((me, 2), (other, 1)):
        client.cookies.clear()
        _submit_ranks(client, db, user, login(client, user), n, "mine")
    page = client.get("/label/mine").text  # logged in as `other` now
    assert 'id="total">1<' in page
    client.cookies.clear()
    login(client, me)
    page = client.get("/label/mine").text
    assert 'id="total">2<' in page and 'id="today">2<' in page
    start = client.get("/label").text
    assert "Done today: <strong>2</strong>" in start


def test_progress_counts_this_login_session_and_today(client, db):
    me = make_user(db)
    _submit_ranks(client, db, me, login(client, me), 2, "first")
    start = client.get("/label").text
    assert 'Done this session: <strong id="done-session">2</strong>' in start
    client.cookies.clear()
    csrf = login(client, me)  # a new session: its count starts again, today's does not
    _submit_ranks(client, db, me, csrf, 1, "second")
    a = lease(db, me, make_task(db, TaskKind.rank))
    page = client.get(f"/label/a/{a.id}").text
    assert 'id="done-session">1<' in page and 'id="done-today">3<' in page
