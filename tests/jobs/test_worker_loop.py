"""The loop on real processes: uvicorn + Celery workers. Feedback goes in through the API;
the round trains, registers, promotes and generates; a labeler leases a rank task of the
new policy's candidates. And the failure paths: a SIGKILLed worker, a cancel mid-training.

Here the workers are laid out as docker-compose lays them out, on Redis; the whole loop on
the embedded transport, as `make run` starts it, is tests/simulation/test_loop.py. Both on
PostgreSQL: with the test's SQLite file shared by four processes, the SQLite run's later
tests found it locked."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.prompts.models import Candidate
from app.registry.models import ModelVersion
from tests.jobs.loop import SMALL, label_everything, labeler_token, seed_tasks
from tests.jobs.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]
LONG_SFT = {**SMALL, "sft": {**SMALL["sft"], "epochs": 1_000_000}}  # runs until stopped


@pytest.fixture
def stack(committed_db, tiny_base, tmp_path: Path) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    s = Stack("redis", tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def fed(committed_db, stack, staff_token):  # type: ignore[no-untyped-def]
    """Demonstrations and rankings submitted through the stack's API."""
    seed_tasks(committed_db)
    label_everything(stack.http, labeler_token(committed_db))
    return staff_token


def test_loop_through_worker_registers_lineage_and_feeds_labelers(stack, fed, committed_db):
    made = stack.http.post("/api/v1/rounds", headers=fed, json={
        "config": SMALL, "promote": True,
        "generate": {"k": 4, "n_prompts": 3, "max_new_tokens": 12, "overlap": 1}})
    assert made.status_code == 202, made.text
    rnd = stack.wait_round(made.json()["round_id"], fed)
    assert rnd["state"] == "succeeded", [(j["kind"], j["error"]) for j in rnd["jobs"]]

    models = {m["kind"]: m for m in stack.get("/api/v1/models", fed)}
    assert {"base", "sft", "rm", "policy"} <= set(models)
    assert models["sft"]["parent_id"] == models["base"]["id"]
    assert models["rm"]["parent_id"] == models["policy"]["parent_id"] == models["sft"]["id"]
    export = next(j for j in rnd["jobs"] if j["kind"] == "export")
    snaps = {k: v["id"] for k, v in export["outputs"]["snapshots"].items()}
    assert models["sft"]["snapshot_ids"] == [snaps["sft"]]
    assert set(models["rm"]["snapshot_ids"]) == {snaps["grouped"], snaps["sft"]}
    assert "policy:active" in models["policy"]["aliases"]
    lineage = stack.get(f"/api/v1/models/{models['policy']['id']}/lineage", fed)
    assert [a["kind"] for a in lineage["ancestors"]] == ["sft", "base"]

    generated = next(j for j in rnd["jobs"] if j["kind"] == "generate")["outputs"]
    assert generated["tasks"] >= 1
    leased = stack.http.get("/api/v1/tasks/next?kind=rank",
                            headers={"Authorization": f"Bearer {labeler_token(committed_db)}"})
    assert leased.status_code == 200 and leased.json()["task_id"] in generated["task_ids"]
    shown = {c["id"] for c in leased.json()["candidates"]}
    writers = set(committed_db.scalars(select(Candidate.model_version_id)
                                       .where(Candidate.id.in_(shown))))
    assert models["policy"]["id"] in writers and None not in writers

    # the loop page's JSON, from the web process: the round with what went in and came out
    (row,) = stack.get("/api/v1/loop", fed)["rounds"]
    assert row["round_id"] == rnd["id"] and row["state"] == "succeeded"
    assert row["data"]["demonstrations"] == export["outputs"]["snapshots"]["sft"]["rows"]
    assert row["data"]["rankings"] == export["outputs"]["snapshots"]["grouped"]["rows"]
    assert row["rm"]["val_accuracy"] == models["rm"]["metrics"]["val_accuracy"]
    assert row["ppo"]["kl"] is not None and row["watch"]["signals"]["kl"] == row["ppo"]["kl"]


def _running_sft(stack: Stack, headers: dict[str, str]) -> tuple[int, dict]:
    made = stack.http.post("/api/v1/rounds", headers=headers, json={"config": LONG_SFT,
                                                                    "stages": ["sft"]})
    assert made.status_code == 202, made.text
    sft_id = next(j["id"] for j in made.json()["jobs"] if j["kind"] == "sft")
    job = stack.wait_job(sft_id, headers, lambda j: j["state"] == "running"
                         and j["progress"] > 0 and j["inputs"].get("out"))
    return made.json()["round_id"], job


def _no_output(job: dict) -> None:
    out = Path(job["inputs"]["out"])
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


@pytest.mark.postgres_only
def test_sigkilled_worker_fails_job_retryable_and_retry_succeeds(stack, fed, committed_db):
    round_id, job = _running_sft(stack, fed)
    stack.kill_worker()
    failed = stack.wait_job(job["id"], fed, lambda j: j["state"] == "failed", timeout=60)
    assert failed["retryable"] and "no heartbeat" in failed["error"]
    _no_output(failed)
    assert committed_db.scalar(select(ModelVersion.id).where(
        ModelVersion.job_id == job["id"])) is None
    assert stack.get(f"/api/v1/rounds/{round_id}", fed)["state"] == "failed"

    stack.start_worker()
    committed_db.commit()
    # The retry runs with a short config: a new attempt of the same stage, linked to it.
    retry = stack.http.post(f"/api/v1/jobs/{job['id']}/retry", headers=fed)
    assert retry.status_code == 202, retry.text
    assert retry.json()["retry_of"] == job["id"] and retry.json()["attempt"] == 2
    from app.jobs.models import Job

    committed_db.get(Job, retry.json()["id"]).config = SMALL["sft"]
    committed_db.commit()
    assert stack.wait_round(round_id, fed)["state"] == "succeeded"


@pytest.mark.postgres_only
def test_cancel_running_stage_stops_within_seconds_and_registers_nothing(stack, fed,
                                                                         committed_db):
    round_id, job = _running_sft(stack, fed)
    asked = stack.http.post(f"/api/v1/jobs/{job['id']}/cancel", headers=fed)
    assert asked.status_code == 200 and asked.json()["state"] == "cancelling"
    ended = stack.wait_job(job["id"], fed, lambda j: j["state"] == "cancelled", timeout=20)
    assert ended["retryable"]
    _no_output(ended)
    assert committed_db.scalar(select(ModelVersion.id).where(
        ModelVersion.job_id == job["id"])) is None
    assert stack.get(f"/api/v1/rounds/{round_id}", fed)["state"] == "cancelled"


def test_sigkilled_import_stores_nothing_is_failed_retryable_and_its_retry_imports_once(
        committed_db, staff_token, tmp_path):
    import json

    from app.prompts.models import Prompt

    n = 15_000
    data = "".join(json.dumps({"text": f"Describe the colour of stone number {i} at dusk",
                               "end_user_id": f"user-{i}"}) + "\n" for i in range(n))
    stack = Stack("redis", tmp_path, import_inline_max_mb="0.5")
    try:
        sent = stack.http.post("/api/v1/prompts/import", headers=staff_token,
                               files={"file": ("big.jsonl", data.encode())})
        assert sent.status_code == 202, sent.text
        job_id = sent.json()["job_id"]
        stack.wait_job(job_id, staff_token,
                       lambda j: j["state"] == "running" and 0 < j["progress"] < 0.9)
        stack.kill_worker("default")  # mid-import, for real
        count = select(func.count()).select_from(Prompt)
        assert committed_db.scalar(count) == 0  # its transaction went with it

        stack.start_default_worker()  # its beat's reaper finds the silent job
        failed = stack.wait_job(job_id, staff_token, lambda j: j["state"] == "failed",
                                timeout=90)
        assert failed["retryable"] and "no heartbeat" in failed["error"]
        assert committed_db.scalar(count) == 0
        retry = stack.http.post(f"/api/v1/jobs/{job_id}/retry", headers=staff_token)
        assert retry.status_code == 202, retry.text
        done = stack.wait_job(retry.json()["id"], staff_token,
                              lambda j: j["state"] in ("succeeded", "failed"), timeout=300)
        assert done["state"] == "succeeded", done["error"]
        assert done["outputs"]["accepted"] == n and done["outputs"]["merged"] == 0
        committed_db.expire_all()
        assert committed_db.scalar(count) == n
    finally:
        stack.close()
