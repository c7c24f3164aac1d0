"""Celery tasks of the jobs domain: run one job, reap dead ones, tick the schedule."""

from typing import Any

from app.jobs import runner
from app.jobs.broker import celery_app


@celery_app.task(name="jobs.run", acks_late=True)
def run_job(job_id: int) -> dict[str, Any]:
    """Run job `job_id`; a duplicate delivery finds it claimed and does nothing."""
    return runner.run_job(job_id)


@celery_app.task(name="jobs.reap")
def reap() -> dict[str, list[int]]:
    """Fail jobs whose heartbeat stopped; send queued jobs whose message was lost."""
    return runner.reap()


@celery_app.task(name="jobs.tick_schedule")
def tick_schedule() -> int | None:
    """Start a round if the schedule says so; returns its id."""
    from app.jobs import schedule

    return schedule.tick()


@celery_app.task(name="jobs.decide_rounds")
def decide_rounds() -> list[int]:
    """Decide rounds waiting for judgment whose campaign is complete; the jobs sent."""
    from app.jobs import judged

    return judged.sweep()
