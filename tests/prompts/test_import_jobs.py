"""A large upload is imported by a job: 202 with the job's id at once, progress on the job,
the report as its outputs; the rows and the report commit together, so a worker that dies
after the commit is retried without importing twice. Smaller uploads still import in the
request (tests/prompts/test_routes.py)."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.auth import service as auth
from app.auth.models import Role
from app.config import get_settings
from app.jobs import runner
from app.jobs import service as jobs
from app.jobs.kinds import JobContext
from app.jobs.models import Job, JobState
from app.prompts import jobs as import_jobs
from app.prompts import uploads
from app.prompts.models import Candidate, Prompt
from app.queue.models import Task
from tests.factories import csrf_from, login, make_user

N = 450  # over two progress reports (import_jobs.PROGRESS_EVERY)


@pytest.fixture
def sent(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """The job ids the routes send to the workers (the test runs them itself)."""
    ids: list[int] = []
    monkeypatch.setattr(uploads, "send_after_commit", ids.extend)
    monkeypatch.setattr(get_settings(), "import_inline_max_mb", 0.01)  # 10 KB
    return ids


@pytest.fixture
def researcher(committed_db):  # type: ignore[no-untyped-def]
    user = make_user(committed_db, Role.researcher)
    _, token = auth.create_token(db=committed_db, user=user, name="import")
    committed_db.commit()
    return user, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def live(app, committed_db):  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        yield client


def _lines(n: int, start: int = 0) -> bytes:
    return "".join(json.dumps({"text": f"Write a haiku about the number {i} and its friends",
                               "end_user_id": f"u{i}"}) + "\n"
                   for i in range(start, start + n)).encode()


def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


def test_large_upload_is_a_job_whose_outputs_are_the_report(live, committed_db, researcher,
                                                             sent):
    db, (user, bearer) = committed_db, researcher
    data = _lines(N) + _lines(3)  # 3 duplicates
    assert len(data) > 10 * 1024
    resp = live.post("/api/v1/prompts/import", headers=bearer,
                     files={"file": ("big.jsonl", data)})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status_url"] == f"/api/v1/jobs/{body['job_id']}" and body["bytes"] == len(data)
    assert sent == [body["job_id"]] and _count(db, Prompt) == 0  # nothing imported yet
    job = db.get(Job, body["job_id"])
    assert job.kind == "import" and job.state == JobState.queued and job.created_by_id == user.id
    upload = Path(job.config["upload"])
    assert upload.read_bytes() == data

    progress: list[float] = []
    real_progress = JobContext.progress
    def spy(ctx: JobContext, fraction: float) -> None:
        progress.append(fraction)
        real_progress(ctx, fraction)
    JobContext.progress = spy  # type: ignore[method-assign]
    try:
        assert runner.run_job(job.id)["state"] == JobState.succeeded
    finally:
        JobContext.progress = real_progress  # type: ignore[method-assign]

    state = live.get(body["status_url"], headers=bearer).json()
    assert state["state"] == "succeeded" and state["progress"] == 1.0
    report = state["outputs"]
    assert (report["accepted"], report["merged"], report["rejected"]) == (N, 3, 0)
    assert _count(db, Prompt) == N
    assert db.scalar(select(func.count()).select_from(Prompt)
                     .where(Prompt.created_by_id == user.id)) == N
    assert progress and progress == sorted(progress) and 0 < progress[-1] < 1
    assert not upload.exists()


def test_small_upload_still_imports_in_the_request(live, committed_db, researcher, sent):
    resp = live.post("/api/v1/prompts/import", headers=researcher[1],
                     files={"file": ("small.jsonl", _lines(5))})
    assert resp.status_code == 200 and resp.json()["accepted"] == 5
    assert sent == [] and _count(committed_db, Prompt) == 5


def test_upload_over_the_limit_is_413_and_keeps_nothing(live, committed_db, researcher, sent,
                                                        monkeypatch):
    monkeypatch.setattr(get_settings(), "import_max_upload_mb", 0.005)  # 5 KB
    resp = live.post("/api/v1/prompts/import", headers=researcher[1],
                     files={"file": ("big.jsonl", _lines(200))})
    assert resp.status_code == 413 and "RLHF_IMPORT_MAX_UPLOAD_MB" in resp.json()["detail"]
    assert sent == [] and _count(committed_db, Job) == 0 and _count(committed_db, Prompt) == 0


def test_strict_import_with_a_bad_line_fails_the_job_and_stores_nothing(
        live, committed_db, researcher, sent):
    data = _lines(N) + b"{not json\n"
    resp = live.post("/api/v1/prompts/import", headers=researcher[1],
                     files={"file": ("big.jsonl", data)}, data={"strict": "true"})
    job_id = resp.json()["job_id"]
    runner.run_job(job_id)
    job = committed_db.get(Job, job_id)
    committed_db.refresh(job)
    assert job.state == JobState.failed and "nothing was imported" in job.error
    assert _count(committed_db, Prompt) == 0
    assert Path(job.config["upload"]).exists()  # kept for a retry


def test_a_retry_after_a_commit_whose_worker_died_does_not_import_twice(
        live, committed_db, researcher, sent):
    db = committed_db
    resp = live.post("/api/v1/prompts/import", headers=researcher[1],
                     files={"file": ("big.jsonl", _lines(N))})
    job_id = resp.json()["job_id"]
    # The worker imports and commits, then dies before marking the job succeeded; the
    # reaper fails the job (retryable) and a researcher retries it.
    job = jobs.claim(db=db, job_id=job_id, worker="w:1")
    db.commit()
    ctx = JobContext(job_id=job_id, kind="import", config=dict(job.config), inputs={},
                     workdir=Path(get_settings().data_dir))
    first = import_jobs.import_upload(ctx)
    assert first["accepted"] == N and _count(db, Prompt) == N
    assert jobs.end(db=db, job_id=job_id, worker=None, state=JobState.failed,
                    error="the worker stopped responding")
    retry = jobs.new_attempt(db=db, job=db.get(Job, job_id), user=None)
    db.commit()

    runner.run_job(retry.id)
    db.expire_all()
    again = db.get(Job, retry.id)
    assert again.state == JobState.succeeded
    assert again.outputs["accepted"] == N and again.outputs["merged"] == 0
    assert _count(db, Prompt) == N


def test_large_candidate_upload_is_a_job_too(live, committed_db, researcher, sent):
    rows = "".join(json.dumps({"prompt": f"Describe the colour number {i}", "candidates": [
        {"text": f"answer {i}.{j}", "model": "m"} for j in range(4)]}) + "\n" for i in range(60))
    resp = live.post("/api/v1/candidates/import", headers=researcher[1],
                     files={"file": ("c.jsonl", rows.encode())},
                     data={"rank_tasks": "true", "overlap": "2"})
    assert resp.status_code == 202, resp.text
    runner.run_job(resp.json()["job_id"])
    report = live.get(resp.json()["status_url"], headers=researcher[1]).json()["outputs"]
    assert report["prompts_created"] == 60 and report["rank_tasks"] == 60
    assert _count(committed_db, Candidate) == 240 and _count(committed_db, Task) == 60


def test_large_upload_from_the_page_goes_to_the_job_page(live, committed_db, sent):
    user = make_user(committed_db, Role.researcher)
    committed_db.commit()
    login(live, user)
    token = csrf_from(live.get("/prompts").text)
    resp = live.post("/prompts/import", files={"file": ("big.jsonl", _lines(N))},
                     data={"csrf_token": token, "form": "page"}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    job_id = sent[0]
    assert resp.headers["location"] == f"/jobs/{job_id}"
    page = live.get(resp.headers["location"])
    assert page.status_code == 200 and "being imported by job" in page.text


def test_large_json_body_is_a_job_too_and_keeps_its_api_source(live, committed_db,
                                                                 researcher, sent):
    from app.prompts.models import PromptSource

    objects = [json.loads(line) for line in _lines(N).decode().splitlines()]
    resp = live.post("/api/v1/prompts/import", headers=researcher[1],
                     json={"prompts": [*objects, {"text": ""}], "strict": False})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert committed_db.get(Job, job_id).config["rows"] == N + 1
    runner.run_job(job_id)
    report = live.get(resp.json()["status_url"], headers=researcher[1]).json()["outputs"]
    assert (report["accepted"], report["rejected"]) == (N, 1)
    assert report["issues"][0]["line"] == N + 1  # lines are list positions, as inline
    committed_db.expire_all()
    assert set(committed_db.scalars(select(Prompt.source)).all()) == {PromptSource.api}

    rows = [{"prompt": f"Describe the shape number {i}", "candidates": [
        {"text": f"shape {i}.{j}"} for j in range(4)]} for i in range(80)]
    resp = live.post("/api/v1/candidates/import", headers=researcher[1], json=rows)
    assert resp.status_code == 202, resp.text
    runner.run_job(resp.json()["job_id"])
    assert _count(committed_db, Candidate) == 320


def test_json_body_over_the_upload_limit_is_413_and_keeps_nothing(live, committed_db,
                                                                  researcher, sent,
                                                                  monkeypatch):
    monkeypatch.setattr(get_settings(), "import_max_upload_mb", 0.005)  # 5 KB
    objects = [json.loads(line) for line in _lines(200).decode().splitlines()]
    resp = live.post("/api/v1/prompts/import", headers=researcher[1], json=objects)
    assert resp.status_code == 413 and "RLHF_IMPORT_MAX_UPLOAD_MB" in resp.json()["detail"]
    assert sent == [] and _count(committed_db, Job) == 0 and _count(committed_db, Prompt) == 0


def test_a_cancelled_import_removes_its_upload_and_stores_nothing(live, committed_db,
                                                                   researcher, sent):
    resp = live.post("/api/v1/prompts/import", headers=researcher[1],
                     files={"file": ("big.jsonl", _lines(N))})
    job_id = resp.json()["job_id"]
    upload = Path(committed_db.get(Job, job_id).config["upload"])
    assert upload.exists()
    cancelled = live.post(f"/api/v1/jobs/{job_id}/cancel", headers=researcher[1])
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert not upload.exists()
    assert runner.run_job(job_id)["state"] == "skipped"  # a late delivery does nothing
    assert _count(committed_db, Prompt) == 0


def test_a_process_finds_the_import_kind_once_wired_and_leaves_it_queued_before(
        committed_db, researcher):
    """A worker (or a script) knows every job kind once it has loaded them (app.wiring):
    one that imports only the engine's runner leaves the job queued for another, rather
    than failing it."""
    import os
    import subprocess
    import sys

    job = import_jobs.queue_import(db=committed_db, what="prompts", data=_lines(3),
                                   filename="p.jsonl", options={}, user=researcher[0])
    committed_db.commit()

    def run(setup: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", f"{setup}from app.jobs import runner; "
             f"print(runner.run_job({job.id})['state'])"],
            env=dict(os.environ), capture_output=True, text=True, timeout=120)
        return out.stdout.strip().rsplit("\n", 1)[-1] + out.stderr[-2000:]

    assert run("import app.models; ").startswith("skipped")
    committed_db.expire_all()
    assert committed_db.get(Job, job.id).state == "queued" and _count(committed_db, Prompt) == 0
    assert run("from app.wiring import wire; wire(); ").startswith("succeeded")
    assert _count(committed_db, Prompt) == 3