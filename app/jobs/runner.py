"""Running one job in a worker: claim it, keep its heartbeat, run its kind, end it, and
move its round along (through the hook the rounds layer registers). Every step is its own
short transaction; the work runs outside any."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from app import store
from app.config import get_settings
from app.db import session_scope
from app.jobs import service as jobs
from app.jobs.errors import JobCancelled, JobFailed
from app.jobs.kinds import JobContext, all_kinds, settle_round
from app.jobs.models import JobState

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Flushes what the job reported and renews its lease every job_heartbeat_s; sets the
    context's cancel flag when a cancel was asked for or the lease was lost."""

    def __init__(self, ctx: JobContext, worker: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{ctx.job_id}")
        self.ctx, self.worker, self.stopping = ctx, worker, threading.Event()

    def run(self) -> None:
        period = get_settings().job_heartbeat_s
        while not self.stopping.wait(period):
            self.beat()

    def beat(self) -> None:
        progress, metrics, lines = self.ctx.report.take()
        try:
            with session_scope() as db:
                keep_going = jobs.heartbeat(db=db, job_id=self.ctx.job_id, worker=self.worker,
                                            progress=progress, metrics=metrics, lines=lines)
        except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
            log.exception("heartbeat of job %s failed", self.ctx.job_id)
            return
        if not keep_going:
            self.ctx.cancel.set()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        self.beat()  # what was reported since the last beat


def workdir(job_id: int) -> Path:
    """The job's scratch directory (removed when it ends)."""
    return (get_settings().data_dir / "jobs" / str(job_id)).resolve()


def run_job(job_id: int) -> dict[str, Any]:
    """Claim and run the job; safe to call twice (a job not queued is left alone)."""
    worker = jobs.worker_id()
    with session_scope() as db:
        job = jobs.claim(db=db, job_id=job_id, worker=worker)
        if job is None:
            return {"job_id": job_id, "state": "skipped"}
        ctx = JobContext(job_id=job.id, kind=job.kind, config=dict(job.config),
                         inputs=dict(job.inputs), workdir=workdir(job.id),
                         child_timeout_s=get_settings().job_cancel_grace_s)
        round_id = job.round_id
        if round_id is not None:
            settle_round(db, round_id)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    beat = Heartbeat(ctx, worker)
    beat.start()
    state, error, outputs = JobState.failed, "", {}
    try:
        # What the job reads from the store's cache stays there until it ends: the cache's
        # eviction (another job's download) skips it while the child reads it.
        with store.holding():
            outputs = all_kinds()[ctx.kind].handler(ctx)
        state = JobState.succeeded
    except JobCancelled as exc:
        state, error = JobState.cancelled, str(exc)
    except JobFailed as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded on the job, which can be retried
        log.exception("job %s (%s) failed", job_id, ctx.kind)
        error = f"{type(exc).__name__}: {exc}"
    finally:
        beat.stop()
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    ended = _end(ctx, worker, state, error, outputs)
    if not ended:
        discard_outputs(outputs)
    if round_id is not None:
        advance(round_id)
    return {"job_id": job_id, "state": state if ended else "lost"}


def _end(ctx: JobContext, worker: str, state: JobState, error: str,
         outputs: dict[str, Any]) -> bool:
    with session_scope() as db:
        if state == JobState.succeeded:
            try:
                with db.begin_nested():
                    return jobs.finish(db=db, job_id=ctx.job_id, worker=worker, outputs=outputs)
            except Exception as exc:  # noqa: BLE001 - e.g. registering failed: the job fails
                log.exception("recording job %s failed", ctx.job_id)
                state, error = JobState.failed, f"recording the result failed: {exc}"
                discard_outputs(outputs)
        ended = jobs.end(db=db, job_id=ctx.job_id, worker=worker, state=state, error=error)
    if state != JobState.succeeded:
        discard_outputs(outputs or ctx.inputs)
    return ended


def discard_outputs(outputs: dict[str, Any]) -> None:
    """Remove a model directory that will not be registered, and what a killed stage left
    beside it (its `.NAME.tmp-*` directory and live metrics file); one already published
    to the store is removed there."""
    published = outputs.get("path")
    if published and store.is_url(published):
        store.discard(published)
    path = outputs.get("out") or published
    if not path or store.is_url(path):
        return
    target = Path(path)
    shutil.rmtree(target, ignore_errors=True)
    for leftover in target.parent.glob(f".{target.name}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def advance(round_id: int) -> None:
    """Settle the round and send its next stage (after the commit)."""
    with session_scope() as db:
        ready = settle_round(db, round_id)
    if ready:
        jobs.dispatch(ready)


def reap() -> dict[str, list[int]]:
    """Fail jobs whose worker died (no heartbeat within the lease) and send lost messages."""
    failed: list[int] = []
    touched: set[int] = set()
    with session_scope() as db:
        for job in jobs.stale(db=db):
            cancelled = job.state == JobState.cancelling
            jobs.end(db=db, job_id=job.id, worker=None,
                     state=JobState.cancelled if cancelled else JobState.failed,
                     error=("cancelled; its worker stopped before confirming" if cancelled else
                            f"the worker ({job.worker}) stopped responding: no heartbeat since "
                            f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC. Retry to run it again."))
            discard_outputs(job.inputs)
            failed.append(job.id)
            if job.round_id is not None:
                touched.add(job.round_id)
    for round_id in touched:
        advance(round_id)
    with session_scope() as db:
        unsent = jobs.unsent(db=db)
    sent = jobs.dispatch(unsent) if unsent else []
    return {"failed": failed, "sent": sent}
