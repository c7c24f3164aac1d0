"""A large export is a job of the jobs engine: recorded with its snapshot, so a broker that
is down at the request leaves nothing stuck, and a worker that dies mid-build has its
export failed by the reaper, its temp directory removed."""

from datetime import timedelta

import kombu.exceptions
from sqlalchemy import select

from app.config import get_settings
from app.db import utcnow
from app.exports import service
from app.exports.models import DatasetSnapshot
from app.exports.schemas import ExportCreate
from app.jobs import runner
from app.jobs import service as jobs
from app.jobs.broker import celery_app
from app.jobs.models import Job
from tests.factories import make_user, ranked_task


def _large_export(db, monkeypatch) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    user = make_user(db, "researcher")
    ranked_task(db, 4, [(make_user(db), [[0], [1], [2], [3]])], split="train")
    monkeypatch.setattr(service, "INLINE_MAX_SOURCE_ROWS", 0)  # every export is "large"
    snapshot = service.request_export(db=db, user=user,
                                      request=ExportCreate(kind="comparisons"))
    db.commit()
    job = db.scalars(select(Job).where(Job.kind == "export_snapshot")).one()
    return snapshot.id, job.id


def test_export_requested_while_broker_down_is_sent_once_it_is_back(committed_db, monkeypatch):
    db = committed_db
    sid, job_id = _large_export(db, monkeypatch)

    def broker_down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise kombu.exceptions.OperationalError("Error 111 connecting to redis: refused")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    assert jobs.send_unsent() == []  # the send after the request fails...
    db.expire_all()
    assert db.get(Job, job_id).state == "queued" and db.get(Job, job_id).enqueued_at is None
    monkeypatch.undo()
    assert job_id in runner.reap()["sent"]  # ...and the beat's sweep sends it later
    runner.run_job(job_id)
    db.expire_all()
    assert db.get(Job, job_id).state == "succeeded"
    assert db.get(DatasetSnapshot, sid).state == "done"


def test_export_whose_worker_died_is_failed_and_its_temp_dir_removed(committed_db,
                                                                     monkeypatch):
    db = committed_db
    sid, job_id = _large_export(db, monkeypatch)
    job = db.get(Job, job_id)
    job.state, job.worker = "running", "elsewhere:4242"  # claimed by a worker that died
    job.heartbeat_at = utcnow() - timedelta(seconds=get_settings().job_lease_s + 5)
    db.get(DatasetSnapshot, sid).state = "running"
    db.commit()
    exports_dir = get_settings().exports_dir.resolve()
    leftover = exports_dir / f".tmp-{sid}-abc123"
    leftover.mkdir(parents=True)
    (leftover / "part.jsonl").write_text("{}\n")

    assert job_id in runner.reap()["failed"]
    db.expire_all()
    assert db.get(Job, job_id).state == "failed" and db.get(Job, job_id).retryable
    snapshot = db.get(DatasetSnapshot, sid)
    assert snapshot.state == "failed" and "request the export again" in snapshot.error
    assert not leftover.exists()
