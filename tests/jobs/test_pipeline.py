"""A round end to end, each job run by the runner in this process (the worker's code path
without the broker): feedback through the API → export → SFT → RM → PPO → promote →
generate → rank tasks whose candidates carry the policy's version."""

import pytest
from sqlalchemy import select

from app.jobs import rounds, runner
from app.jobs.models import Job, Round
from app.prompts.models import Candidate
from app.queue.models import Task, TaskKind
from app.registry import service as registry
from app.registry.models import ModelVersion, ModelVersionSnapshot
from tests.jobs.loop import SMALL, label_everything, labeler_token, seed_tasks

pytestmark = pytest.mark.slow


def _run_round(db, round_id: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(10):
        queued = [j for j in rounds.current_jobs(db=db, round_id=round_id) if j.state == "queued"]
        if not queued:
            return
        runner.run_job(queued[0].id)
        db.expire_all()


def test_round_trains_registers_promotes_and_feeds_new_rank_tasks(live_client, committed_db,
                                                                  tiny_base, staff_token):
    db = committed_db
    seed_tasks(db)
    label_everything(live_client, labeler_token(db))
    made = live_client.post("/api/v1/rounds", headers=staff_token, json={
        "config": SMALL, "promote": True, "generate": {"k": 4, "n_prompts": 3,
                                                       "max_new_tokens": 12}})
    assert made.status_code == 202, made.text
    round_id = made.json()["round_id"]
    assert [j["kind"] for j in made.json()["jobs"]] == [
        "export", "sft", "rm", "ppo", "promote", "generate"]
    _run_round(db, round_id)

    jobs = {j.kind: j for j in db.scalars(select(Job).where(Job.round_id == round_id))}
    assert {k: j.state for k, j in jobs.items()} == {k: "succeeded" for k in jobs}, {
        k: j.error for k, j in jobs.items()}
    assert db.get(Round, round_id).state == "succeeded"
    versions = {v.kind: v for v in db.scalars(select(ModelVersion))}
    assert set(versions) == {"base", "sft", "rm", "policy"}
    assert versions["sft"].parent_id == versions["base"].id
    assert versions["rm"].parent_id == versions["sft"].id
    assert versions["policy"].parent_id == versions["sft"].id
    linked = set(db.scalars(select(ModelVersionSnapshot.snapshot_id).where(
        ModelVersionSnapshot.model_version_id == versions["rm"].id)))
    assert linked == set(jobs["export"].outputs["snapshots"][k]["id"] for k in ("grouped", "sft"))
    assert registry.alias_target(db=db, alias="policy:active").id == versions["policy"].id

    new_tasks = [db.get(Task, t) for t in jobs["generate"].outputs["task_ids"]]
    assert new_tasks and all(t.kind == TaskKind.rank for t in new_tasks)
    cands = db.scalars(select(Candidate).where(Candidate.id.in_(new_tasks[0].candidate_ids)))
    sources = {c.model_version_id for c in cands}
    assert sources <= {versions["policy"].id, versions["sft"].id}
    assert versions["policy"].id in {c.model_version_id for t in new_tasks for c in db.scalars(
        select(Candidate).where(Candidate.id.in_(t.candidate_ids)))}

    # A labeler leases one, and the payload names no model.
    got = live_client.get("/api/v1/tasks/next?kind=rank",
                          headers={"Authorization": f"Bearer {labeler_token(db)}"})
    assert got.status_code == 200
    assert "model" not in got.text.replace("model_", "")
