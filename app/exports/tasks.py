"""Celery job that builds a large snapshot, storing its progress on the row."""

import shutil
import time
from typing import Any

from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope
from app.exports import service
from app.exports.models import DatasetSnapshot
from app.jobs import service as jobs
from app.jobs.broker import celery_app
from app.jobs.errors import JobFailed
from app.jobs.kinds import JobContext, job_kind

PROGRESS_EVERY_S = 1.0


class _ProgressWriter:
    """Commits progress in its own short transaction, at most once per PROGRESS_EVERY_S.

    The export's own read runs in one long transaction (its cursor would close on commit),
    so progress cannot be written through that session.
    """

    def __init__(self, snapshot_id: int) -> None:
        self.snapshot_id = snapshot_id
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S or total <= 0:
            return
        self._last = now
        with session_scope() as db:
            service.set_progress(db=db, snapshot_id=self.snapshot_id, progress=done / total)


@celery_app.task(name="exports.build_snapshot")
def build_snapshot(snapshot_id: int) -> dict[str, Any]:
    """Build a pending snapshot; safe to run twice (a done snapshot is left alone)."""
    with session_scope() as db:
        if service.claim(db=db, snapshot_id=snapshot_id) is None:
            return {"snapshot_id": snapshot_id, "state": "skipped"}
    try:
        # Only reads (progress goes through sessions of its own): on SQLite it must not
        # hold the write lock for the whole export (app.db.read_only_session).
        with session_scope(read_only=True) as db:
            snapshot = service.get_snapshot(db=db, snapshot_id=snapshot_id)
            result = service.write_files(db=db, snapshot=snapshot,
                                         on_progress=_ProgressWriter(snapshot_id))
    except Exception as exc:  # noqa: BLE001 - recorded on the row, which can be requested again
        with session_scope() as db:
            snapshot = service.get_snapshot(db=db, snapshot_id=snapshot_id)
            service.mark_failed(db=db, snapshot=snapshot, error=str(exc))
        return {"snapshot_id": snapshot_id, "state": "failed", "error": str(exc)}
    with session_scope() as db:
        snapshot = service.get_snapshot(db=db, snapshot_id=snapshot_id)
        service.record_result(db=db, snapshot=snapshot, result=result)
        return {"snapshot_id": snapshot_id, "state": "done", "rows": snapshot.rows}


@job_kind("export_snapshot", on_failure=lambda db, job: snapshot_failed(db, job),
          label="export snapshot")
def export_snapshot(ctx: JobContext) -> dict[str, Any]:
    """A large export as a job: a lease and heartbeat while it runs, so a dead worker's
    export is failed by the reaper instead of staying "running"."""
    result = build_snapshot(int(ctx.config["snapshot_id"]))
    if result["state"] == "failed":
        raise JobFailed(result["error"])
    return result


def snapshot_failed(db: Session, job: Any) -> None:
    """The job ended without building: fail its snapshot (if not built) and remove what a
    killed build left in the exports directory."""
    snapshot_id = int(job.config["snapshot_id"])
    snapshot = db.get(DatasetSnapshot, snapshot_id)
    if snapshot is not None and snapshot.state != "done":
        service.mark_failed(db=db, snapshot=snapshot, error=f"the export job {job.state}: "
                            f"{job.error or ''}; request the export again")
    for leftover in get_settings().exports_dir.resolve().glob(f".tmp-{snapshot_id}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def enqueue(snapshot_id: int) -> None:
    """Send the snapshot's job once the request that recorded it has committed; if the broker
    is down it stays queued and the beat's sweep sends it when the broker is back."""
    del snapshot_id  # its job was recorded with it (service.request_export)
    jobs.send_unsent()
