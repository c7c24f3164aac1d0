"""The loop's API refuses what it must, with a sentence, and changes nothing."""

import pytest
from sqlalchemy import func, select

from app.auth import service as auth
from app.config import get_settings
from app.jobs import service as jobs
from app.jobs.models import Job, JobMetric
from app.registry.models import ModelAlias, ModelVersion
from app.rounds import service as rounds
from app.rounds.models import Round
from tests.factories import make_user
from tests.jobs.loop import label_everything, labeler_token, seed_tasks


@pytest.fixture(autouse=True)
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    """The job ids the routes send after their commit, recorded instead of sent: a test's
    transaction is never committed, so a worker could not see them (and on SQLite the send's
    own transaction would wait for the test's write lock). Sending is tested on real workers
    in test_worker_loop.py."""
    calls: list[list[int]] = []
    monkeypatch.setattr(jobs, "dispatch", lambda ids: calls.append(list(ids)) or list(ids))
    return calls


@pytest.fixture
def staff(db):  # type: ignore[no-untyped-def]
    _, token = auth.create_token(db=db, user=make_user(db, "researcher"))
    return {"Authorization": f"Bearer {token}"}


def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(select(func.count()).select_from(model)) or 0


def _version(db, kind: str, name: str = "v") -> ModelVersion:  # type: ignore[no-untyped-def]
    v = ModelVersion(kind=kind, name=name, path=f"/models/{name}-{kind}-{_count(db, ModelVersion)}",
                     config={}, metrics={})
    db.add(v)
    db.flush()
    return v


def test_round_without_data_says_how_much_is_needed(client, db, staff):
    resp = client.post("/api/v1/rounds", json={}, headers=staff)
    assert resp.status_code == 422
    assert "needs at least 6 demonstrations" in resp.json()["detail"]
    assert _count(db, Round) == 0 and _count(db, Job) == 0


@pytest.mark.parametrize("body, words", [
    ({"stages": ["sft", "dpo"]}, "Unknown stage"),
    ({"stages": []}, "Unknown stage"),
    ({"config": {"sft": {"epoch": 3}}}, "has no setting 'epoch'"),
    ({"config": {"sft": {"epochs": "three"}}}, "must be a int"),
    ({"config": {"rm": {"base_model": "/etc"}}}, "set by the round itself"),
    ({"config": {"ppo2": {}}}, "unknown stage"),
    ({"promote": True, "generate": {"k": 12}}, "less than or equal to 9"),
    ({"promote": True, "generate": {"temperature": 2}}, "generate.temperature"),
])
def test_round_with_bad_request_is_refused(client, db, staff, body, words):
    resp = client.post("/api/v1/rounds", json=body, headers=staff)
    assert resp.status_code == 422 and words in resp.text, resp.text
    assert _count(db, Round) == 0


def test_second_round_while_one_runs_is_409(client, db, staff, sent):
    seed_tasks(db)
    label_everything(client, labeler_token(db))
    first = client.post("/api/v1/rounds", json={"stages": ["rm"]}, headers=staff)
    assert first.status_code == 202, first.text
    second = client.post("/api/v1/rounds", json={"stages": ["rm"]}, headers=staff)
    assert second.status_code == 409 and "already running" in second.json()["detail"]
    assert _count(db, Round) == 1
    assert sent == [[first.json()["jobs"][0]["id"]]]  # the export, after the commit


def test_broker_down_is_503_and_creates_nothing(client, db, staff, monkeypatch):
    seed_tasks(db)
    label_everything(client, labeler_token(db))
    monkeypatch.setattr(get_settings(), "redis_url", "redis://127.0.0.1:1/0")  # nothing there
    resp = client.post("/api/v1/rounds", json={"stages": ["rm"]}, headers=staff)
    assert resp.status_code == 503 and "labeling keeps working" in resp.json()["detail"]
    assert int(resp.headers["Retry-After"]) > 0  # when to try again, as for a database outage
    assert _count(db, Round) == 0
    assert client.get("/api/v1/tasks/next?kind=rank",
                      headers={"Authorization": f"Bearer {labeler_token(db)}"}).status_code in (
        200, 204)


def test_retry_of_succeeded_job_and_unknown_ids(client, db, staff):
    job = jobs.submit(db=db, kind="export", config={})
    job.state = "succeeded"
    db.flush()
    resp = client.post(f"/api/v1/jobs/{job.id}/retry", headers=staff)
    assert resp.status_code == 409 and "only a failed or cancelled job" in resp.json()["detail"]
    assert client.get("/api/v1/jobs/999999", headers=staff).status_code == 404
    assert client.post("/api/v1/jobs/999999/cancel", headers=staff).status_code == 404
    assert client.post("/api/v1/models/999999/promote", headers=staff).status_code == 404
    assert _count(db, Job) == 1


def test_cancel_queued_job_at_once_and_ended_job_is_409(client, db, staff):
    job = jobs.submit(db=db, kind="export", config={})
    resp = client.post(f"/api/v1/jobs/{job.id}/cancel", headers=staff)
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{job.id}/cancel", headers=staff)
    assert again.status_code == 409


def test_promote_and_rollback_move_aliases_with_history(client, db, staff):
    a, b, rm = _version(db, "policy", "a"), _version(db, "policy", "b"), _version(db, "rm", "r")
    base = _version(db, "base", "base")
    first = client.post(f"/api/v1/models/{a.id}/promote", headers=staff)
    assert first.status_code == 200 and first.json()["generate_job_id"]  # fresh candidates
    assert db.get(Job, first.json()["generate_job_id"]).kind == "generate"
    quiet = client.post(f"/api/v1/models/{b.id}/promote?generate=false", headers=staff)
    assert quiet.status_code == 200 and quiet.json()["generate_job_id"] is None
    assert _count(db, Job) == 1
    assert db.get(ModelAlias, "policy:active").model_version_id == b.id
    again = client.post(f"/api/v1/models/{b.id}/promote", headers=staff)
    assert again.status_code == 409
    assert client.post(f"/api/v1/models/{base.id}/promote", headers=staff).status_code == 409
    back = client.post("/api/v1/models/rollback", json={"kind": "policy"}, headers=staff)
    assert back.status_code == 200 and back.json()["id"] == a.id
    assert client.post("/api/v1/models/rollback", json={"kind": "rm"},
                       headers=staff).status_code == 409
    assert client.post("/api/v1/models/rollback", json={"kind": "critic"},
                       headers=staff).status_code == 422
    history = client.get("/api/v1/models/aliases/history?alias=policy:active",
                         headers=staff).json()
    assert [(e["action"], e["from_version_id"], e["to_version_id"]) for e in history] == [
        ("rollback", b.id, a.id), ("promote", a.id, b.id), ("promote", None, a.id)]
    models = {m["id"]: m for m in client.get("/api/v1/models", headers=staff).json()}
    assert models[a.id]["aliases"] == ["policy:active"] and models[rm.id]["aliases"] == []


def test_generate_from_a_reward_model_is_refused(client, db, staff):
    rm = _version(db, "rm", "r")
    resp = client.post("/api/v1/generate", json={"model_id": rm.id, "k": 4}, headers=staff)
    assert resp.status_code == 422 and "is a rm model" in resp.json()["detail"]
    nothing = client.post("/api/v1/generate", json={"k": 4}, headers=staff)
    assert nothing.status_code == 422 and "No model to sample from" in nothing.json()["detail"]
    assert client.post("/api/v1/generate", json={"k": 3}, headers=staff).status_code == 422
    assert _count(db, Job) == 0


def test_metrics_are_downsampled_on_the_server(client, db, staff):
    job = jobs.submit(db=db, kind="export", config={})
    db.add_all(JobMetric(job_id=job.id, step=s, values={"loss": float(s), "kl": 1.0})
               for s in range(1, 3001))
    db.flush()
    series = client.get(f"/api/v1/jobs/{job.id}/metrics?keys=loss&max_points=100",
                        headers=staff).json()["series"]
    assert list(series) == ["loss"] and len(series["loss"]) == 100
    assert series["loss"][-1] == [3000, 3000.0] and series["loss"][0][1] < 40
    full = client.get(f"/api/v1/jobs/{job.id}/metrics", headers=staff).json()["series"]
    assert len(full["kl"]) == 1000


def test_round_plan_and_settle_skip_later_stages_after_a_failure(db):
    seed_tasks(db)
    from app.labeling.models import Demonstration  # noqa: F401

    rnd = Round(state="running", stages=["sft", "rm"], config={}, promote=False,
                exclusive=False, trigger="manual", watermark={})
    db.add(rnd)
    db.flush()
    made = [jobs.submit(db=db, kind=k, config={}, round_id=rnd.id, position=i)
            for i, k in enumerate(["export", "sft", "rm"])]
    made[0].state, made[1].state, made[1].error = "succeeded", "failed", "boom"
    db.flush()
    assert rounds.settle(db=db, round_id=rnd.id) == []
    assert made[2].state == "cancelled" and "skipped" in made[2].error
    assert rnd.state == "failed" and "boom" in rnd.error
    retried = rounds.retry_job(db=db, job_id=made[1].id, user=None)
    assert retried.attempt == 2 and rnd.state == "running"
    current = rounds.current_jobs(db=db, round_id=rnd.id)
    assert [(j.kind, j.state) for j in current] == [
        ("export", "succeeded"), ("sft", "queued"), ("rm", "queued")]
    assert rounds.settle(db=db, round_id=rnd.id) == [retried.id]
