"""Jobs: create, send, claim, heartbeat, finish, cancel, retry, reap; and their metrics.

The row is the truth. The broker's message only says "look at job N": a worker claims the
job by moving it from queued to running under a row lock (a second delivery finds it
running and does nothing), proves it is alive with a heartbeat, and ends it. A job whose
heartbeat stops is failed by the reaper and can be retried; a queued job whose message
was lost is sent again by the sweep.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from app.config import get_settings
from app.db import utcnow
from app.jobs.broker import celery_app
from app.jobs.errors import BrokerUnavailable, JobError
from app.jobs.kinds import all_kinds
from app.jobs.logtext import readable
from app.jobs.models import ENDED_STATES, Job, JobMetric, JobState

log = logging.getLogger(__name__)
class Actor(Protocol):
    """Who asked for a job: any user row (the engine knows no auth, only an id)."""

    id: int


LOG_TAIL_CHARS = 20_000
MAX_POINTS = 1000
BROKER_RETRY_AFTER_S = 30  # a Redis restart or failover takes tens of seconds
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
RUN_JOB = "jobs.run"  # the task that runs a job (app.jobs.tasks), sent by name


def worker_id() -> str:
    """This process's name in a job's `worker` column (host:pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def get_job(*, db: Session, job_id: int, lock: bool = False) -> Job:
    """One job, or a 404 JobError."""
    stmt = select(Job).where(Job.id == job_id)
    job = db.scalars(stmt.with_for_update() if lock else stmt).first()
    if job is None:
        raise JobError(f"There is no job {job_id}.", 404)
    return job


def list_jobs(*, db: Session, round_id: int | None = None, state: str | None = None,
              limit: int = 200) -> list[Job]:
    """Jobs, newest first, optionally of one round or in one state."""
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if round_id is not None:
        stmt = stmt.where(Job.round_id == round_id)
    if state is not None:
        stmt = stmt.where(Job.state == state)
    return list(db.scalars(stmt))


def submit(*, db: Session, kind: str, config: dict[str, Any], user: Actor | None = None,
           round_id: int | None = None, position: int = 0, attempt: int = 1,
           retry_of_id: int | None = None) -> Job:
    """Record a queued job; `dispatch` sends it once the transaction has committed."""
    kinds = all_kinds()
    if kind not in kinds:
        raise JobError(f"Unknown job kind {kind!r}; known: {', '.join(sorted(kinds))}.", 422)
    job = Job(kind=kind, config=config, round_id=round_id, position=position,
              queue=kinds[kind].queue, state=JobState.queued, progress=0.0, inputs={},
              outputs={}, attempt=attempt, retry_of_id=retry_of_id, retryable=False,
              cancel_requested=False, log_tail="",
              created_by_id=user.id if user else None)
    db.add(job)
    db.flush()
    return job


def dispatch(job_ids: Sequence[int]) -> list[int]:
    """Send the jobs' messages (after their commit); returns the ids sent.

    A send that fails (broker down) is logged and left to the sweep, which sends every
    queued job that has no recorded send, so nothing stays queued forever.
    """
    from app.db import session_scope

    sent = []
    for job_id in job_ids:
        with session_scope() as db:
            job = db.get(Job, job_id)
            if job is None or job.state != JobState.queued or not _ready(db, job):
                continue
            try:
                celery_app.send_task(RUN_JOB, args=[job_id], queue=job.queue, retry=False)
            except Exception as exc:  # noqa: BLE001 - the sweep sends it again
                log.warning("could not send job %s: %s", job_id, exc)
                continue
            job.enqueued_at = utcnow()
            sent.append(job_id)
    return sent


def _ready(db: Session, job: Job) -> bool:
    """True when every earlier stage of the job's round has succeeded (or it has none)."""
    if job.round_id is None:
        return True
    return not db.scalar(select(exists().where(*_blocking(job))))


def _blocking(job: Job) -> list[Any]:
    retry = aliased(Job)
    return [Job.round_id == job.round_id, Job.position < job.position,
            Job.state != JobState.succeeded,
            ~exists().where(retry.retry_of_id == Job.id)]


def claim(*, db: Session, job_id: int, worker: str) -> Job | None:
    """Move a queued, ready job to running for this worker; None if there is nothing to do."""
    job = db.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None or job.state != JobState.queued or not _ready(db, job):
        return None
    if job.kind not in all_kinds():  # a process that never loaded it: leave it to one that did
        log.error("job %s is of kind %r, which this process does not know (app.wiring.wire "
                  "loads every kind); left queued", job.id, job.kind)
        return None
    now = utcnow()
    job.state, job.worker, job.heartbeat_at = JobState.running, worker, now
    job.started_at, job.progress, job.error = now, 0.0, None
    db.flush()
    return job


def heartbeat(*, db: Session, job_id: int, worker: str, progress: float | None,
              metrics: list[tuple[int, dict[str, float]]], lines: list[str]) -> bool:
    """Store what the job reported and prove it alive; False: stop (cancel or lease lost)."""
    job = db.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None or job.worker != worker or job.state not in (JobState.running,
                                                                 JobState.cancelling):
        return False
    job.heartbeat_at = utcnow()
    if progress is not None:
        job.progress = progress
    if lines:
        # Kept as a terminal would show it (app/jobs/logtext.py), so the tail's room goes
        # to lines a person reads, not to a progress bar's hundred redraws.
        job.log_tail = readable((job.log_tail or "") + "\n".join(lines) + "\n")[-LOG_TAIL_CHARS:]
    if metrics:
        db.add_all(JobMetric(job_id=job_id, step=s, values=v) for s, v in metrics)
    db.flush()
    return not job.cancel_requested


def finish(*, db: Session, job_id: int, worker: str, outputs: dict[str, Any]) -> bool:
    """Mark the job succeeded and run its kind's on_success in the same transaction.

    False when the job is no longer this worker's (the reaper failed it): then nothing is
    recorded and the caller discards what it produced.
    """
    job = db.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None or job.worker != worker or job.state not in (JobState.running,
                                                                 JobState.cancelling):
        return False
    job.state, job.outputs, job.progress = JobState.succeeded, dict(outputs), 1.0
    job.finished_at, job.retryable = utcnow(), False
    on_success = all_kinds()[job.kind].on_success
    if on_success is not None:
        on_success(db, job, outputs)
    db.flush()
    return True


def end(*, db: Session, job_id: int, worker: str | None, state: JobState, error: str) -> bool:
    """Mark the job failed (retryable) or cancelled; False if it was not ours to end."""
    job = db.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None or job.state in ENDED_STATES:
        return False
    if worker is not None and job.worker != worker:
        return False
    job.state, job.error, job.finished_at = state, error[:4000], utcnow()
    job.retryable = state in (JobState.failed, JobState.cancelled)
    on_failure = all_kinds()[job.kind].on_failure if job.kind in all_kinds() else None
    if on_failure is not None:
        on_failure(db, job)  # e.g. the export's snapshot is failed with it
    db.flush()
    return True


def request_cancel(*, db: Session, job_id: int) -> Job:
    """Cancel a queued job now, or ask a running one to stop at its next step."""
    job = get_job(db=db, job_id=job_id, lock=True)
    if job.state == JobState.queued:
        job.state, job.finished_at, job.retryable = JobState.cancelled, utcnow(), True
        job.error = "cancelled before it started"
        on_failure = all_kinds()[job.kind].on_failure
        if on_failure is not None:
            on_failure(db, job)
    elif job.state == JobState.running:
        job.state, job.cancel_requested = JobState.cancelling, True
    elif job.state != JobState.cancelling:
        raise JobError(f"Job {job_id} has already {job.state}; there is nothing to cancel.", 409)
    db.flush()
    return job


def new_attempt(*, db: Session, job: Job, user: Actor | None) -> Job:
    """A fresh queued copy of a failed or cancelled job, linked to it."""
    if job.state not in (JobState.failed, JobState.cancelled):
        raise JobError(f"Job {job.id} {job.state}: only a failed or cancelled job can be "
                       "retried.", 409)
    if db.scalar(select(exists().where(Job.retry_of_id == job.id))):
        raise JobError(f"Job {job.id} was already retried; retry its newest attempt.", 409)
    return submit(db=db, kind=job.kind, config=dict(job.config), user=user,
                  round_id=job.round_id, position=job.position, attempt=job.attempt + 1,
                  retry_of_id=job.id)


def stale(*, db: Session) -> list[Job]:
    """Running or cancelling jobs whose heartbeat is older than the lease."""
    cutoff = utcnow() - timedelta(seconds=get_settings().job_lease_s)
    stmt = select(Job).where(Job.state.in_([JobState.running, JobState.cancelling]),
                             Job.heartbeat_at < cutoff).with_for_update(skip_locked=True)
    return list(db.scalars(stmt))


def send_unsent() -> list[int]:
    """Send every queued job that has no recorded send (after the commit that made them)."""
    from app.db import session_scope

    with session_scope() as db:
        found = unsent(db=db)
    return dispatch(found) if found else []


def unsent(*, db: Session) -> list[int]:
    """Queued jobs never sent, or sent over RLHF_JOB_RESEND_AFTER_S ago and still unclaimed
    while their queue holds no message: the message was lost (a Redis restarted without
    persistence loses every message it held; the job waited an hour for the next send)."""
    cutoff = utcnow() - timedelta(seconds=get_settings().job_resend_after_s)
    rows = db.execute(select(Job.id, Job.queue, Job.enqueued_at).where(
        Job.state == JobState.queued, (Job.enqueued_at.is_(None)) | (Job.enqueued_at < cutoff),
    ).order_by(Job.id)).all()
    waiting = queues_holding_messages({queue for _, queue, sent in rows if sent is not None})
    # A queue with messages waiting is busy: the job's message is among them, or it was
    # lost and the job is sent again once the queue drains. A redelivery is a no-op anyway.
    return [job_id for job_id, queue, sent in rows if sent is None or queue not in waiting]


def queues_holding_messages(queues: set[str]) -> set[str]:
    """Those of the broker's queues that hold messages not yet taken by a worker (all of
    them when that cannot be told, so nothing is sent twice on a guess)."""
    if not queues:
        return set()
    url = get_settings().redis_url
    if not url:  # the embedded transport: one file per message, kept across restarts
        folder = get_settings().broker_folder / "in"
        return {q for q in queues if next(folder.glob(f"*.{q}.msg"), None) is not None}
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        # kombu's Redis transport keeps a queue as a list of that name.
        return {q for q in sorted(queues) if client.llen(q)}
    except redis.RedisError:
        return set(queues)


def metric_series(*, db: Session, job_id: int, keys: Sequence[str] | None = None,
                  max_points: int = MAX_POINTS) -> dict[str, list[list[float]]]:
    """Each key's [[step, value], …], downsampled to at most max_points by bucket means."""
    get_job(db=db, job_id=job_id)
    rows = db.execute(select(JobMetric.step, JobMetric.values)
                      .where(JobMetric.job_id == job_id).order_by(JobMetric.id)).all()
    wanted = set(keys) if keys else None
    series: dict[str, list[list[float]]] = {}
    for step, values in rows:
        for key, value in values.items():
            if wanted is None or key in wanted:
                series.setdefault(key, []).append([step, value])
    return {k: downsample(v, max(2, max_points)) for k, v in series.items()}


def downsample(points: list[list[float]], max_points: int) -> list[list[float]]:
    """Mean of each of max_points equal runs of points (the last point is kept as is)."""
    n = len(points)
    if n <= max_points:
        return points
    out = []
    for b in range(max_points - 1):
        lo, hi = b * (n - 1) // (max_points - 1), (b + 1) * (n - 1) // (max_points - 1)
        chunk = points[lo:max(hi, lo + 1)]
        out.append([chunk[-1][0], sum(p[1] for p in chunk) / len(chunk)])
    out.append(points[-1])
    return out


def broker_available() -> bool:
    """Whether jobs can be sent now (Redis answers a ping within a second; the embedded
    transport is a folder and always can)."""
    url = get_settings().redis_url
    if not url:
        return True
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def require_broker() -> None:
    """503 when the broker is down: nothing is created that could not be started."""
    if not broker_available():
        raise BrokerUnavailable("The job broker (Redis) cannot be reached, so no job can start "
                                "now; labeling keeps working. Try again once it is back.",
                                retry_after_s=BROKER_RETRY_AFTER_S)
