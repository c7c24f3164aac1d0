"""The loop on real processes: uvicorn + Celery workers. Feedback goes in through the API;
the round trains, registers, promotes and generates; a labeler leases a rank task of the
new policy's candidates. A round judged by people: it waits for its campaign, a held-out
labeler judges, and the last judgment promotes it (on Redis and on the embedded transport).
And the failure paths: a SIGKILLed worker, a cancel mid-training.

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
from tests.jobs.stack import Stack, _wait

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]
LONG_SFT = {**SMALL, "sft": {**SMALL["sft"], "epochs": 1_000_000}}  # runs until stopped


@pytest.fixture(params=["redis"])
def stack(request, committed_db, tiny_base, tmp_path: Path) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    s = Stack(request.param, tmp_path)
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


# PPO with a learning rate large enough that the policy's outputs differ from its SFT's
# (with the same sampling seed, a barely moved policy writes the same words: no pair to judge).
MOVED = {**SMALL, "ppo": {**SMALL["ppo"], "lr": 1e-2}}


def _held_out_judge(db) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from app.auth import service as auth
    from app.auth.models import Role
    from tests.factories import make_user

    user = make_user(db, Role.labeler, held_out=True)
    _, token = auth.create_token(db=db, user=user, name="judge")
    db.commit()
    return {"Authorization": f"Bearer {token}"}


def _judge_for(stack: Stack, db, judge: dict[str, str], winner: int) -> int:  # type: ignore[no-untyped-def]
    """Judge every compare task, picking the output `winner` (a version id) wrote."""
    n = 0
    while (got := stack.http.get("/api/v1/tasks/next?kind=compare", headers=judge)).status_code \
            == 200:
        task = got.json()
        writers = dict(db.execute(select(Candidate.id, Candidate.model_version_id).where(
            Candidate.id.in_([c["id"] for c in task["candidates"]]))).all())
        choice = next(cid for cid, version in writers.items() if version == winner)
        sent = stack.http.post(f"/api/v1/tasks/{task['task_id']}/submit", headers=judge, json={
            "assignment_id": task["assignment_id"], "idempotency_key": f"judge-{task['task_id']}",
            "seconds_spent": 3, "choice": choice})
        assert sent.status_code in (200, 201), sent.text
        n += 1
    assert got.status_code == 204, got.text
    return n


@pytest.mark.parametrize("stack", ["redis", "embedded"], indirect=True)
def test_if_better_round_waits_for_its_campaign_and_promotes_when_people_prefer_it(
        stack, fed, committed_db):
    from tests.evaluation.factories import make_prompts

    make_prompts(committed_db, 10)
    judge = _held_out_judge(committed_db)
    made = stack.http.post("/api/v1/rounds", headers=fed, json={
        "config": MOVED, "promote": "if_better",
        "evaluate": {"n_prompts": 10, "overlap": 1, "judges": "held_out"}})
    assert made.status_code == 202, made.text
    round_id = made.json()["round_id"]
    found: dict = {}

    def waiting() -> bool:
        found.update(stack.get(f"/api/v1/rounds/{round_id}", fed))
        assert found["state"] not in ("failed", "cancelled"), found["error"]
        return found["state"] == "awaiting_judgment"

    _wait(waiting, 600, f"round {round_id} to wait for judgment",
          lambda: [(j["kind"], j["state"], j["error"]) for j in found.get("jobs", [])])
    assert found["decision"]["action"] == "waiting"
    assert found["promote"] == "if_better" and found["evaluations"]["vs_previous"] is None
    vs_sft = found["evaluations"]["vs_sft"]
    models = {m["kind"]: m for m in stack.get("/api/v1/models", fed)}
    assert "policy:active" not in models["policy"]["aliases"]  # not before people judged
    assert f'data-round-id="{round_id}" data-state="awaiting_judgment"' in stack.http.get(
        "/jobs", headers=fed).text
    judged = _judge_for(stack, committed_db, judge, winner=models["policy"]["id"])
    assert judged >= 6, judged  # enough distinct pairs for a lower bound above one half
    rnd = stack.wait_round(round_id, fed, timeout=120)
    assert rnd["state"] == "succeeded", rnd["error"]
    assert rnd["decision"]["action"] == "promoted" and rnd["decision"]["ci95"][0] > 0.5
    assert [j["kind"] for j in rnd["jobs"]][-2:] == ["evaluate", "promote"]
    campaign = stack.get(f"/api/v1/evaluations/{vs_sft}", fed)
    assert campaign["state"] == "complete" and campaign["judgments"] == judged
    # the round's RM scored the same pairs people judged, for the watch to read beside them
    rm_read = campaign["rm_verdict"]
    assert rm_read["reward_model_id"] == models["rm"]["id"]
    assert rm_read["by_model"][str(models["policy"]["id"])]["n"] == campaign["items"]
    after = {m["kind"]: m for m in stack.get("/api/v1/models", fed)}
    assert "policy:active" in after["policy"]["aliases"]


def test_round_on_a_llama_base_model_trains_registers_and_generates(committed_db, staff_token,
                                                                     tmp_path: Path):
    # RLHF_BASE_MODEL: a model of the user's kind (Llama, chat template), not the tiny GPT-2
    from training.__main__ import main as training_main

    base = tmp_path / "llama"
    assert training_main(["--threads", "1", "small-llama", "--out", str(base),
                          "--pretrain-steps", "20", "--pretrain-len", "48"]) == 0
    stack = Stack("redis", tmp_path / "data", base_model=str(base))
    try:
        seed_tasks(committed_db)
        label_everything(stack.http, labeler_token(committed_db))
        made = stack.http.post("/api/v1/rounds", headers=staff_token, json={
            "config": SMALL, "promote": True,
            "generate": {"k": 4, "n_prompts": 3, "max_new_tokens": 8, "overlap": 1}})
        assert made.status_code == 202, made.text
        rnd = stack.wait_round(made.json()["round_id"], staff_token)
        assert rnd["state"] == "succeeded", [(j["kind"], j["error"]) for j in rnd["jobs"]]
        models = {m["kind"]: m for m in stack.get("/api/v1/models", staff_token)}
    finally:
        stack.close()
    assert {"base", "sft", "rm", "policy"} <= set(models)
    rm_dir = committed_db.get(ModelVersion, models["rm"]["id"]).path
    config = (Path(rm_dir) / "config.json").read_text()
    assert '"LlamaForSequenceClassification"' in config and '"score_offset"' in config
    generated = next(j for j in rnd["jobs"] if j["kind"] == "generate")["outputs"]
    texts = committed_db.scalars(select(Candidate.text).where(
        Candidate.model_version_id == models["policy"]["id"])).all()
    assert generated["tasks"] >= 1 and texts
    assert not [t for t in texts if "<|im_end|>" in t or "<|im_start|>" in t]
