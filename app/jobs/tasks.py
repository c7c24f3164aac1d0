"""Celery tasks of the engine: run one job, reap dead ones and re-send lost messages."""

from typing import Any

from app.jobs import runner
from app.jobs.broker import celery_app
from app.jobs.service import RUN_JOB


@celery_app.task(name=RUN_JOB, acks_late=True)
def run_job(job_id: int) -> dict[str, Any]:
    """Run job `job_id`; a duplicate delivery finds it claimed and does nothing."""
    return runner.run_job(job_id)


@celery_app.task(name="jobs.reap")
def reap() -> dict[str, list[int]]:
    """Fail jobs whose heartbeat stopped; send queued jobs whose message was lost."""
    return runner.reap()
