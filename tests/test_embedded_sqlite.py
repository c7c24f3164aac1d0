"""The embedded default (`make run`: SQLite under the data directory, no servers) under
concurrent labelers: no 5xx. A write waits its turn for SQLite's one write lock; one that
waits past RLHF_DB_LOCK_TIMEOUT_S is told to come back (503, Retry-After), never a 500."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO, _free_port, serve

pytestmark = pytest.mark.slow

# Work of every kind a labeler does, and a labeler token (printed) for the probes.
SEED = """
import app.models
from sqlalchemy import select
from app.auth import service as auth
from app.db import session_scope
from app.queue import candidates
from app.prompts import service as prompts
from app.prompts.models import Candidate, PromptKind
from app.prompts.rules import ImportRules
from app.queue import creation

rules = ImportRules(scrub_pii=False)
with session_scope() as db:
    prompts.import_objects(db=db, rules=rules, objects=[
        {"text": f"Describe topic {i} in a few sentences.", "end_user_id": f"u{i}"}
        for i in range(200)])
    creation.create_demonstrate_tasks_for_train_prompts(db=db, overlap=2)
    creation.create_write_prompt_tasks(db=db, prompt_kind=PromptKind.plain, count=300)
    candidates.import_candidates(db=db, rules=rules, rank_tasks=True, overlap=3, objects=enumerate(
        [{"prompt": f"Which answer to question {i}?",
          "candidates": [{"text": f"Answer {j} to {i}"} for j in range(4)]}
         for i in range(150)], start=1))
    creation.create_rate_tasks(db=db, overlap=2, candidate_ids=list(
        db.scalars(select(Candidate.id).limit(300))))
    user = auth.create_user(db=db, email="probe@example.com", password="probe-password",
                            role="labeler")
    print(auth.create_token(db=db, user=user)[1])
"""


@pytest.fixture
def embedded(tmp_path: Path) -> tuple[dict[str, str], str]:
    """A migrated, seeded embedded deployment's settings, and a labeler's token."""
    settings = {"database_url": "", "redis_url": "", "data_dir": str(tmp_path)}
    env = {**os.environ, **{f"RLHF_{k.upper()}": v for k, v in settings.items()}}
    for argv in (["-m", "app.cli", "db", "upgrade"], ["-c", SEED]):
        done = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    return settings, done.stdout.strip().splitlines()[-1]


@contextmanager
def make_run(env: dict[str, str], log: Path) -> Iterator[str]:
    """`rlhf-studio up` as `make run` starts it (the web process, a Celery worker with beat
    and the gpu worker, all on the one SQLite file); yields its base URL."""
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the app did not start in 60 s"
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the workers too
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_twenty_simulated_labelers_on_the_embedded_default_get_no_5xx(embedded, tmp_path):
    """A lock timeout of 3 s, a tenth of the default: a write waits about as long as the
    writers ahead of it take, not until SQLite's busy handler happens to poll at a free
    moment (it let a lease wait 4-8 s while the median waited 50 ms, and answered 503s)."""
    settings, _ = embedded
    env = {**os.environ, **{f"RLHF_{k.upper()}": v for k, v in settings.items()},
           "RLHF_DB_LOCK_TIMEOUT_S": "3"}
    report, log = tmp_path / "report.json", tmp_path / "up.log"
    with make_run(env, log) as base:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "simulate", "--url", base, "--labelers", "20",
             "--seconds", "15", "--think", "0", "--kinds", "demonstrate,rank,rate,write_prompt",
             "--quiet", "--report", str(report)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(report.read_text())
    answered_5xx = re.findall(r'" (5\d\d)\b', log.read_text())  # the access log
    print(f"20 labelers on SQLite: {found['submitted']} submitted, "
          f"{found['submits_per_s']}/s, errors {found['errors']}, 5xx in the log "
          f"{len(answered_5xx)}, latency {found['latency_ms']}")
    assert found["server_errors"] == 0 and not answered_5xx, found["errors"]
    assert set(found["submitted"]["by_kind"]) == {"demonstrate", "rank", "rate", "write_prompt"}


def test_a_write_kept_waiting_past_the_lock_timeout_is_503_not_500(embedded, tmp_path):
    settings, token = embedded
    headers = {"Authorization": f"Bearer {token}"}
    with serve(**settings, db_lock_timeout_s="1") as base:
        holder = sqlite3.connect(tmp_path / "rlhf.sqlite", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # a long import or export, writing
        try:
            resp = httpx.get(f"{base}/api/v1/tasks/next?kind=demonstrate", headers=headers,
                             timeout=30)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"] and "unavailable" in resp.json()["detail"]
        again = httpx.get(f"{base}/api/v1/tasks/next?kind=demonstrate", headers=headers)
        assert again.status_code == 200
