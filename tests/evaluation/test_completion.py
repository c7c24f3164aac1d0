"""Campaigns that finish: the last judgment completes one, a researcher can close one early,
one with nothing to judge completes at once and says why; and the defaults a campaign takes
(the active SFT as baseline, the policy's own rollout length, the prompts there are)."""

import re

import pytest
from sqlalchemy import select

from app.auth.models import Role
from app.evaluation import service
from app.evaluation.models import Evaluation, EvaluationItem
from app.queue.models import Task
from app.registry import service as registry
from tests.evaluation.factories import campaign, make_prompts, make_version, spec
from tests.factories import login, make_user


def _lease_and_judge(client, db, choice="a"):  # type: ignore[no-untyped-def]
    csrf = login(client, make_user(db, Role.labeler, held_out=True))
    payload = client.get("/api/v1/tasks/next?kind=compare").json()
    task_id = payload["task_id"]
    resp = client.post(f"/api/v1/tasks/{task_id}/submit", json={
        "assignment_id": payload["assignment_id"], "idempotency_key": f"judgment-{task_id}",
        "seconds_spent": 3, "choice": choice}, headers={"X-CSRF-Token": csrf})
    assert resp.status_code in (200, 201), resp.text


def _activate(db, version):  # type: ignore[no-untyped-def]
    registry.move_alias(db=db, alias=f"{version.kind}:active", version=version, user_id=None,
                        action="promote")


def test_the_last_judgment_completes_the_campaign(client, db):
    make_prompts(db, 2)
    ev = campaign(db, None, candidates=[make_version(db, "policy")],
                  baseline=make_version(db, "sft"), n=2)
    _lease_and_judge(client, db)
    db.refresh(ev)
    assert ev.state == "labeling" and ev.closed_reason is None
    _lease_and_judge(client, db, "tie")
    db.refresh(ev)
    assert ev.state == "complete" and ev.completed_at is not None
    assert ev.closed_reason == "Every item judged (2 judgments)."
    login(client, make_user(db, Role.researcher))
    assert client.get(f"/api/v1/evaluations/{ev.id}").json()["state"] == "complete"
    page = client.get(f"/evaluations/{ev.id}").text
    assert "Every item judged" in page and 'id="close-evaluation"' not in page


def test_a_campaign_with_only_identical_pairs_completes_at_once_and_says_why(client, db):
    make_prompts(db, 3)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    ev = campaign(db, None, candidates=[policy], baseline=base, n=3,
                  texts={base.id: "The same words.", policy.id: "The  same words."})
    assert ev.state == "complete" and ev.identical_pairs == 3
    assert "identical" in (ev.closed_reason or "") and "3 pairs" in (ev.closed_reason or "")
    login(client, make_user(db, Role.researcher))
    data = client.get(f"/api/v1/evaluations/{ev.id}/results").json()
    assert data["state"] == "complete" and data["identical_pairs"] == 3
    assert data["closed_reason"] == ev.closed_reason
    page = client.get(f"/evaluations/{ev.id}").text
    assert 'id="closed-reason"' in page and "3 pairs with identical outputs" in page


def test_a_researcher_closes_a_campaign_early_and_its_tasks_close(client, db):
    make_prompts(db, 3)
    ev = campaign(db, None, candidates=[make_version(db, "policy")],
                  baseline=make_version(db, "sft"), n=3)
    _lease_and_judge(client, db)
    labeler_csrf = login(client, make_user(db, Role.labeler))
    assert client.post(f"/api/v1/evaluations/{ev.id}/close",
                       headers={"X-CSRF-Token": labeler_csrf}).status_code == 403
    csrf = login(client, make_user(db, Role.researcher, email="closer@example.com"))
    assert client.post(f"/evaluations/{ev.id}/close").status_code == 403  # no CSRF token
    db.refresh(ev)
    assert ev.state == "labeling"
    resp = client.post(f"/api/v1/evaluations/{ev.id}/close", headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "complete"
    assert resp.json()["closed_reason"] == ("Closed early by closer@example.com with 1 of "
                                            "3 judgments in.")
    task_ids = db.scalars(select(EvaluationItem.task_id)
                          .where(EvaluationItem.evaluation_id == ev.id)).all()
    assert {db.get(Task, t).state for t in task_ids} == {"closed"}
    again = client.post(f"/api/v1/evaluations/{ev.id}/close", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and "complete" in again.json()["detail"]
    resp = client.post(f"/evaluations/{ev.id}/close", data={"csrf_token": csrf})
    assert resp.status_code == 200 and "only a campaign being judged" in resp.text


def test_the_default_baseline_is_the_active_sft_not_the_oldest(db):
    make_prompts(db, 2)
    oldest, active, newest = (make_version(db, "sft") for _ in range(3))
    policy = make_version(db, "policy")
    with pytest.raises(service.EvaluationError, match="no active SFT"):
        service.create_evaluation(db=db, user=None, spec=spec(model_ids=[policy.id]))
    _activate(db, active)
    ev = service.create_evaluation(db=db, user=None, spec=spec(model_ids=[policy.id]))
    assert ev.baseline_id == active.id not in (oldest.id, newest.id)
    assert ev.n_prompts == 2 and len(ev.prompt_ids) == 2  # every test prompt there is


def test_sampling_follows_the_policys_own_rollout_length(db):
    make_prompts(db, 2)
    sft, policy = make_version(db, "sft"), make_version(db, "policy")
    policy.config = {"max_new_tokens": 48, "temperature": 1.0}
    db.flush()
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=sft.id, n_prompts=1))
    assert ev.sampling["max_new_tokens"] == 48
    asked = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=sft.id, n_prompts=1,
        sampling={"max_new_tokens": 20}))
    assert asked.sampling["max_new_tokens"] == 20


def test_the_new_evaluation_form_defaults_to_the_active_versions_and_the_prompts_there_are(
        client, db):
    make_prompts(db, 1)
    sfts = [make_version(db, "sft") for _ in range(3)]
    policies = [make_version(db, "policy") for _ in range(2)]
    _activate(db, sfts[1])
    _activate(db, policies[0])
    login(client, make_user(db, Role.researcher))
    page = client.get("/evaluations").text
    form = page.split('id="new-evaluation"')[1].split("</form>")[0]
    selected = re.findall(r'<option value="(\d+)"[^>]*\bselected\b', form)
    assert selected == [str(sfts[1].id)]  # one, not every SFT
    checked = re.findall(r'name="model_ids" value="(\d+)"[^>]*\bchecked\b', form)
    assert checked == [str(policies[0].id)]
    assert re.search(r'name="n_prompts"[^>]*value="1"', form)
    assert "Only 1 test prompt in the test split" in form
    make_prompts(db, 2)
    assert "Only 3 test prompts in" in client.get("/evaluations").text
    assert not db.scalars(select(Evaluation)).all()


@pytest.mark.postgres_only  # SQLite holds one write lock: its submissions never overlap
def test_the_last_two_judgments_sent_at_once_still_complete_the_campaign(committed_db):
    """Two labelers send the campaign's last two judgments at the same moment: each
    transaction counts the judgments it can see, and neither sees the other's before its
    commit. Without a lock on the campaign both counted one of two and it stayed open."""
    import threading

    from app.db import SessionLocal
    from app.labeling import service as labeling
    from app.labeling.schemas import SubmissionCreate
    from app.queue import service as queue

    db = committed_db
    make_prompts(db, 2)
    ev = campaign(db, None, candidates=[make_version(db, "policy")],
                  baseline=make_version(db, "sft"), n=2, judges="all")
    judges = [make_user(db, Role.labeler) for _ in range(2)]
    leases = [queue.next_task(db=db, user=u, kind="compare") for u in judges]
    db.commit()
    ids = [(u.id, lease.id, lease.task_id) for u, lease in zip(judges, leases, strict=True)
           if lease is not None]
    assert len(ids) == 2

    def judge(session, user_id, assignment_id, task_id):  # type: ignore[no-untyped-def]
        labeling.submit(db=session, user=session.get(type(judges[0]), user_id), task_id=task_id,
                        body=SubmissionCreate(assignment_id=assignment_id, seconds_spent=3,
                                              idempotency_key=f"judgment-race-{task_id}",
                                              choice="a"))

    first, second = SessionLocal(), SessionLocal()
    try:
        judge(first, *ids[0])  # counted, not yet committed
        other = threading.Thread(target=lambda: (judge(second, *ids[1]), second.commit()))
        other.start()
        other.join(timeout=1.0)  # with the lock it waits for the first commit
        first.commit()
        other.join(timeout=30)
        assert not other.is_alive()
    finally:
        first.close()
        second.close()
    db.expire_all()
    assert db.get(Evaluation, ev.id).state == "complete"
