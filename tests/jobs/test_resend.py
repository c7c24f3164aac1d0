"""A queued job whose message the broker lost (Redis restarted without persistence) is
sent again within a short, set time, not an hour later; one whose message waits in its
queue is not sent twice."""

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from app.config import get_settings
from app.db import utcnow
from app.jobs import service as jobs
from app.jobs.models import Job
from app.registry.models import ModelVersion
from tests.e2e.conftest import _free_port
from tests.jobs.stack import REDIS_URL, Stack, _wait


def _sent_ago(db, seconds: float) -> int:  # type: ignore[no-untyped-def]
    job = jobs.submit(db=db, kind="generate", config={}, user=None)
    job.enqueued_at = utcnow() - timedelta(seconds=seconds)
    db.flush()
    return job.id


def test_a_job_sent_minutes_ago_is_sent_again_once_its_queue_is_empty(db, monkeypatch):
    monkeypatch.setattr(get_settings(), "redis_url", REDIS_URL)
    broker = redis.Redis.from_url(REDIS_URL)
    broker.delete("gpu")
    lost = _sent_ago(db, 120)
    recent = _sent_ago(db, 10)
    assert lost in jobs.unsent(db=db) and recent not in jobs.unsent(db=db)
    broker.rpush("gpu", b"a message waiting its turn")  # a busy queue: wait for it
    try:
        assert lost not in jobs.unsent(db=db)
    finally:
        broker.delete("gpu")


def _redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A Redis of this test's own: restarting the tests' Redis would lose what other tests
    keep in it."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                return proc
        except redis.RedisError:
            time.sleep(0.1)
    raise AssertionError("redis-server did not start")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    port = _free_port()
    procs = [_redis(port, tmp_path)]
    try:
        yield port, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


@pytest.mark.slow
@pytest.mark.postgres_only
def test_a_job_lost_in_a_redis_restart_runs_soon_after(committed_db, own_redis, tmp_path,
                                                       staff_token):
    port, procs = own_redis
    policy = ModelVersion(kind="policy", name="p", path=str(tmp_path / "no-such-policy"))
    committed_db.add(policy)
    committed_db.commit()
    stack = Stack("embedded", tmp_path, redis_url=f"redis://127.0.0.1:{port}/0",
                  job_resend_after_s="5")
    try:
        assert stack.worker is not None
        os.kill(stack.worker.pid, signal.SIGTERM)  # no gpu worker: the message waits
        stack.worker.wait(30)
        resp = stack.http.post("/api/v1/generate", json={"model_id": policy.id, "k": 4},
                               headers=staff_token)
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        _wait(lambda: redis.Redis(port=port).llen("gpu") == 1, 10, "the message in Redis")
        procs[0].terminate()  # Redis restarts without persistence: the message is gone
        procs[0].wait(10)
        procs.append(_redis(port, tmp_path))
        restarted = time.monotonic()
        stack.start_worker()
        stack.wait_job(job_id, staff_token, lambda j: j["state"] != "queued", timeout=120)
        waited = time.monotonic() - restarted
        print(f"job {job_id} left queued {waited:.1f} s after the Redis restart")
        committed_db.expire_all()
        assert committed_db.scalar(select(Job.started_at).where(Job.id == job_id)) is not None
    finally:
        stack.close()
