"""Compare tasks through the HTTP app (submit, blindness), campaigns' API, pages, roles, CSRF."""

import csv
import io

import pytest
from sqlalchemy import func, select

from app.auth.models import Role, User
from app.evaluation.models import Evaluation, EvaluationItem, Judgment
from app.jobs.models import Job
from app.queue.models import Assignment, Task
from tests.evaluation.factories import campaign, make_prompts, make_version
from tests.factories import login, make_user


def _setup(db, n=2, overlap=1, judges="held_out"):  # type: ignore[no-untyped-def]
    make_prompts(db, n)
    base = make_version(db, "sft", name="Baseline-SFT-Secret")
    policy = make_version(db, "policy", name="Policy-PPO-Secret")
    ev = campaign(db, None, candidates=[policy], baseline=base, n=n, overlap=overlap,
                  judges=judges)
    return ev, base, policy


def _lease(client):  # type: ignore[no-untyped-def]
    resp = client.get("/api/v1/tasks/next?kind=compare")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _body(payload, choice, key="key-compare-1", **extra):  # type: ignore[no-untyped-def]
    return {"assignment_id": payload["assignment_id"], "idempotency_key": key,
            "seconds_spent": 12, "choice": choice, **extra}


def test_payload_and_page_never_say_which_version_wrote_which(client, db):
    ev, base, policy = _setup(db)
    judge = make_user(db, Role.labeler, held_out=True)
    login(client, judge)
    payload = _lease(client)
    assert payload["kind"] == "compare" and len(payload["candidates"]) == 2
    assert set(payload["candidates"][0]) == {"id", "text"}
    assert payload["params"] == {}
    page = client.get(f"/label/a/{payload['assignment_id']}").text
    raw = client.get("/api/v1/tasks/next?kind=compare").text
    for secret in (base.name, policy.name, "model_version", "baseline", "evaluation_id",
                   "/models/", "sampling"):
        assert secret not in page and secret not in raw, secret
    # The texts are there, in the stored slot order.
    order = db.get(Assignment, payload["assignment_id"]).display_order
    assert [c["id"] for c in payload["candidates"]] == order
    assert page.index('id="slot-A"') < page.index('id="slot-B"')
    assert f'data-cid="{order[0]}"' in page.split('id="slot-B"')[0]


@pytest.mark.parametrize("choice", ["a", "b", "tie", "both_bad", "cid"])
def test_submit_stores_the_answer_and_what_it_means(client, db, choice):
    ev, base, policy = _setup(db)
    judge = make_user(db, Role.labeler, held_out=True)
    csrf = login(client, judge)
    payload = _lease(client)
    order = [c["id"] for c in payload["candidates"]]
    sent = order[1] if choice == "cid" else choice
    ratings = {str(order[0]): {"likert": 6, "flags": ["hallucination"]}}
    resp = client.post(f"/api/v1/tasks/{payload['task_id']}/submit",
                       json=_body(payload, sent, ratings=ratings), headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200, resp.text
    assert resp.json()["next_url"] == "/label/next?kind=compare"
    row = db.scalars(select(Judgment)).one()
    item = db.scalars(select(EvaluationItem).where(EvaluationItem.task_id == payload["task_id"])
                      ).one()
    slot = {"a": order[0], "b": order[1], "cid": order[1]}.get(choice)
    expected = choice if slot is None else (
        "candidate" if slot == item.candidate_id else "baseline")
    assert row.outcome == expected and row.display_order == order
    assert row.choice == ("b" if choice == "cid" else choice)
    assert row.ratings == {str(order[0]): {"likert": 6, "flags": ["hallucination"]}}
    assert db.get(Task, payload["task_id"]).done_labels == 1


def test_submit_twice_with_one_key_stores_one_judgment(client, db):
    _setup(db)
    csrf = login(client, make_user(db, Role.labeler, held_out=True))
    payload = _lease(client)
    url = f"/api/v1/tasks/{payload['task_id']}/submit"
    first = client.post(url, json=_body(payload, "a"), headers={"X-CSRF-Token": csrf})
    again = client.post(url, json=_body(payload, "a"), headers={"X-CSRF-Token": csrf})
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert db.scalar(select(func.count()).select_from(Judgment)) == 1
    other = client.post(url, json=_body(payload, "a", key="key-compare-2"),
                        headers={"X-CSRF-Token": csrf})
    assert other.status_code == 409


@pytest.mark.parametrize("bad", [
    {"choice": None}, {"choice": "c"}, {"choice": 123456789},
    {"choice": "a", "ratings": {"999999": {"likert": 5}}},
    {"choice": "a", "ratings": {"X": {"likert": 9}}},
    {"choice": "a", "ratings": {"X": {"likert": 4, "flags": ["nonsense"]}}},
    {"choice": "a", "idempotency_key": "short"},
    {"choice": "a", "seconds_spent": -1},
])
def test_bad_submission_is_refused_and_changes_nothing(client, db, bad):
    _setup(db)
    csrf = login(client, make_user(db, Role.labeler, held_out=True))
    payload = _lease(client)
    body = _body(payload, None)
    body.update(bad)
    if "ratings" in bad:
        cid = str(payload["candidates"][0]["id"])
        body["ratings"] = {(cid if k == "X" else k): v for k, v in bad["ratings"].items()}
    resp = client.post(f"/api/v1/tasks/{payload['task_id']}/submit", json=body,
                       headers={"X-CSRF-Token": csrf})
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["detail"]
    assert db.scalar(select(func.count()).select_from(Judgment)) == 0
    assert db.get(Task, payload["task_id"]).done_labels == 0


def test_create_campaign_api_returns_its_id_and_queues_generation(client, db, monkeypatch):
    make_prompts(db, 3)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    sent: list[int] = []
    monkeypatch.setattr("app.evaluation.jobs.dispatch", sent.append)
    csrf = login(client, make_user(db, Role.researcher))
    resp = client.post("/api/v1/evaluations", json={
        "model_ids": [policy.id], "baseline_id": base.id, "n_prompts": 2, "overlap": 3,
        "judges": "all"}, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 201, resp.text
    ev = db.get(Evaluation, resp.json()["id"])
    assert ev.overlap == 3 and ev.judges == "all"
    job = db.get(Job, resp.json()["job_id"])
    assert (job.kind, job.config, job.queue, job.state) == (
        "evaluation_generate", {"evaluation_id": ev.id}, "gpu", "queued")
    assert ev.job_id == job.id and sent == [job.id]  # sent after the response
    listed = client.get(f"/api/v1/evaluations?model_id={policy.id}").json()
    assert [e["id"] for e in listed] == [ev.id]


@pytest.mark.parametrize("body, status", [
    ({"baseline_id": "B", "model_ids": ["B"]}, 422),
    ({"n_prompts": 50}, 422),
    ({"model_ids": [987654]}, 404),
    ({"judges": "everyone"}, 422),
    ({"n_prompts": 0}, 422),
])
def test_create_campaign_api_refuses_bad_input_with_nothing_created(client, db, body, status):
    make_prompts(db, 3)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    csrf = login(client, make_user(db, Role.admin))
    full = {"model_ids": [policy.id], "baseline_id": base.id, "n_prompts": 2}
    full.update({k: ([base.id] if v == ["B"] else base.id if v == "B" else v)
                 for k, v in body.items()})
    resp = client.post("/api/v1/evaluations", json=full, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == status, resp.text
    assert resp.json()["detail"]
    assert db.scalar(select(func.count()).select_from(Evaluation)) == 0
    assert db.scalar(select(func.count()).select_from(Job)) == 0


def _judge_all(db, ev, outcomes):  # type: ignore[no-untyped-def]
    """Store judgments directly: one per item, the given outcomes in item order."""
    items = db.scalars(select(EvaluationItem).where(EvaluationItem.evaluation_id == ev.id)
                       .order_by(EvaluationItem.id)).all()
    for item, outcome in zip(items, outcomes, strict=False):
        user = make_user(db, Role.labeler, held_out=True)
        order = [item.baseline_candidate_id, item.candidate_id]
        a = Assignment(task_id=item.task_id, user_id=user.id, display_order=order,
                       expires_at=ev.created_at, state="submitted")
        db.add(a)
        db.flush()
        choice = {"candidate": "b", "baseline": "a"}.get(outcome, outcome)
        db.add(Judgment(evaluation_id=ev.id, item_id=item.id, task_id=item.task_id,
                        assignment_id=a.id, user_id=user.id, choice=choice, outcome=outcome,
                        display_order=order, ratings={}, seconds_spent=5,
                        idempotency_key=f"k-{a.id}-xxxx"))
    db.flush()


def test_results_follow_the_contract_and_csv_matches(client, db):
    ev, base, policy = _setup(db, n=4)
    _judge_all(db, ev, ["candidate", "candidate", "tie", "baseline"])
    login(client, make_user(db, Role.researcher))
    data = client.get(f"/api/v1/evaluations/{ev.id}/results").json()
    (row,) = data["results"]
    assert row["model_id"] == policy.id and row["n"] == 4
    assert row["win_rate"] == pytest.approx(2.5 / 4)
    assert row["ci95"][0] <= row["win_rate"] <= row["ci95"][1]
    assert row["ties"] == 0.25 and row["both_bad"] == 0.0
    assert {b["model_id"] for b in data["bradley_terry"]} == {base.id, policy.id}
    assert all(set(b) >= {"model_id", "score", "ci95"} for b in data["bradley_terry"])
    assert data["position_bias"]["n"] == 3  # decisive answers only
    text = client.get(f"/evaluations/{ev.id}/results.csv").text
    (line,) = list(csv.DictReader(io.StringIO(text)))
    assert float(line["win_rate"]) == pytest.approx(0.625) and line["n"] == "4"
    page = client.get(f"/evaluations/{ev.id}").text
    assert 'id="winrate-chart"' in page and "Automatic signals" in page


def test_automatic_signals_are_apart_from_the_human_numbers(client, db):
    make_prompts(db, 1)
    base = make_version(db, "sft")
    policy = make_version(db, "policy", metrics={"rm_score": 1.25, "kl": 7.5,
                                                 "heldout_lm_loss": 3.1,
                                                 "initial_heldout_lm_loss": 2.9})
    ev = campaign(db, None, candidates=[policy], baseline=base, n=1)
    login(client, make_user(db, Role.admin))
    data = client.get(f"/api/v1/evaluations/{ev.id}/results").json()
    auto = {a["model_id"]: a for a in data["automatic"]}[policy.id]
    assert (auto["rm_score"], auto["kl_to_sft"], auto["heldout_lm_loss"]) == (1.25, 7.5, 3.1)
    assert auto["sources"]["kl_to_sft"] == "kl"
    assert data["results"][0]["win_rate"] is None  # no judgments: no human number made up


def test_automatic_signals_are_those_measured_on_test_prompts_where_recorded(client, db):
    make_prompts(db, 1)
    base = make_version(db, "sft")
    policy = make_version(db, "policy", metrics={"rm_score": 1.25, "kl": 7.5,
                                                 "test_rm_score": 0.5, "test_kl": 2.0})
    ev = campaign(db, None, candidates=[policy], baseline=base, n=1)
    login(client, make_user(db, Role.admin))
    auto = client.get(f"/api/v1/evaluations/{ev.id}/results").json()["automatic"]
    mine = {a["model_id"]: a for a in auto}[policy.id]
    assert (mine["rm_score"], mine["kl_to_sft"]) == (0.5, 2.0)
    assert mine["sources"] == {"rm_score": "test_rm_score", "kl_to_sft": "test_kl"}


def test_labelers_get_403_on_every_campaign_page_and_api(client, db):
    ev, _, _ = _setup(db)
    csrf = login(client, make_user(db, Role.labeler, held_out=True))
    h = {"X-CSRF-Token": csrf}
    for url in ("/evaluations", f"/evaluations/{ev.id}", f"/evaluations/{ev.id}/results.csv",
                "/api/v1/evaluations", f"/api/v1/evaluations/{ev.id}",
                f"/api/v1/evaluations/verdict/{ev.model_ids[0]}",
                f"/api/v1/evaluations/{ev.id}/results"):
        assert client.get(url).status_code == 403, url
    assert client.post("/api/v1/evaluations", json={}, headers=h).status_code == 403
    assert client.post("/evaluations", data={"csrf_token": csrf, "baseline_id": 1,
                                              "n_prompts": 1}).status_code == 403


@pytest.mark.parametrize("role", [Role.researcher, Role.admin])
def test_staff_see_campaign_pages(client, db, role):
    ev, base, policy = _setup(db)
    login(client, make_user(db, role))
    assert policy.name in client.get("/evaluations").text
    assert client.get(f"/evaluations/{ev.id}").status_code == 200


def test_anonymous_gets_401_on_the_api_and_login_on_pages(client, db):
    ev, _, _ = _setup(db)
    assert client.get(f"/api/v1/evaluations/{ev.id}/results").status_code == 401
    resp = client.get("/evaluations", follow_redirects=False)
    assert resp.status_code == 303 and "/login" in resp.headers["location"]


def test_forms_and_cookie_api_calls_need_the_csrf_token(client, db, monkeypatch):
    make_prompts(db, 2)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    monkeypatch.setattr("app.evaluation.jobs.dispatch", lambda _id: None)
    csrf = login(client, make_user(db, Role.researcher))
    form = {"baseline_id": base.id, "model_ids": [policy.id], "n_prompts": 1}
    assert client.post("/evaluations", data=form).status_code == 403
    assert client.post("/evaluations", data={**form, "csrf_token": "wrong"}).status_code == 403
    assert client.post("/api/v1/evaluations", json={"model_ids": [policy.id],
                       "baseline_id": base.id, "n_prompts": 1}).status_code == 403
    assert db.scalar(select(func.count()).select_from(Evaluation)) == 0
    resp = client.post("/evaluations", data={**form, "csrf_token": csrf},
                       follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/evaluations/")
    assert db.scalar(select(func.count()).select_from(Evaluation)) == 1


def test_form_with_a_bad_campaign_says_why_and_creates_nothing(client, db):
    make_prompts(db, 1)
    base = make_version(db, "sft")
    csrf = login(client, make_user(db, Role.researcher))
    resp = client.post("/evaluations", data={"baseline_id": base.id, "model_ids": [base.id],
                                             "n_prompts": 1, "csrf_token": csrf})
    assert resp.status_code == 200 and "both the baseline and a candidate" in resp.text
    assert db.scalar(select(func.count()).select_from(Evaluation)) == 0


def test_verdict_asks_to_confirm_promoting_a_policy_without_or_losing_its_campaign(client, db):
    ev, base, policy = _setup(db, n=4)
    login(client, make_user(db, Role.researcher))
    before = client.get(f"/api/v1/evaluations/verdict/{policy.id}").json()
    assert before["needs_confirmation"] and before["campaigns"] == 0
    _judge_all(db, ev, ["baseline", "baseline", "tie", "candidate"])
    lost = client.get(f"/api/v1/evaluations/verdict/{policy.id}").json()
    assert lost["needs_confirmation"] and lost["evaluation_id"] == ev.id
    assert lost["win_rate"] == pytest.approx(1.5 / 4) and "lost" in lost["reason"]
    ev2 = campaign(db, None, candidates=[policy], baseline=base, n=4)
    _judge_all(db, ev2, ["candidate", "candidate", "tie", "baseline"])
    won = client.get(f"/api/v1/evaluations/verdict/{policy.id}").json()
    assert not won["needs_confirmation"] and won["evaluation_id"] == ev2.id


def _tile(page: str, kind: str) -> str:
    start = page.index(f'id="pick-{kind}"')
    return page[start:page.index("</a>", start)]


@pytest.mark.parametrize("judges, held_out, expected", [
    ("held_out", True, 3), ("held_out", False, 0), ("all", False, 3), ("all", True, 3)])
def test_compare_counts_are_what_the_queue_hands_out(client, db, judges, held_out, expected):
    _setup(db, n=3, judges=judges)
    login(client, make_user(db, Role.labeler, held_out=held_out))
    page = client.get("/label").text
    assert f">{expected} <" in _tile(page, "compare")
    # "Any task" counts only what it leads to: compare tasks for held-out judges alone.
    assert f'id="any-count">{expected if held_out else 0}<' in page
    leased = 0
    while client.get("/api/v1/tasks/next?kind=compare").status_code == 200:
        leased += 1
        db.execute(Assignment.__table__.update().values(state="submitted"))
    assert leased == expected


def test_my_work_counts_compare_judgments(client, db):
    _setup(db, n=2)
    judge = make_user(db, Role.labeler, held_out=True)
    csrf = login(client, judge)
    payload = _lease(client)
    resp = client.post(f"/api/v1/tasks/{payload['task_id']}/submit",
                       json=_body(payload, "tie"), headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200, resp.text
    page = client.get("/label/mine").text
    assert 'id="today">1<' in page and 'id="total">1<' in page
    assert "Nothing yet" not in page
    assert f'href="/label/a/{payload["assignment_id"]}"' in page
    assert "<td>compare</td><td>1</td><td>1</td>" in page.replace("\n", "").replace("  ", "")


@pytest.mark.parametrize("role", [Role.researcher, Role.admin])
def test_results_name_each_judge_for_staff(client, db, role):
    ev, _, _ = _setup(db, n=2)
    _judge_all(db, ev, ["candidate", "tie"])
    judges = db.scalars(select(Judgment.user_id)).all()
    emails = {u.id: u.email for u in db.scalars(select(User).where(User.id.in_(judges)))}
    login(client, make_user(db, role))
    data = client.get(f"/api/v1/evaluations/{ev.id}/results").json()
    assert {row["user_id"]: row["email"] for row in data["per_labeler"]} == emails
    page = client.get(f"/evaluations/{ev.id}").text
    table = page[page.index('id="labelers"'):page.index("</table>", page.index('id="labelers"'))]
    assert all(email in table for email in emails.values())
