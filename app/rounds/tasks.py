"""Celery tasks of the rounds: tick the schedule, decide rounds whose campaign is complete."""

from app.jobs.broker import celery_app


@celery_app.task(name="rounds.tick_schedule")
def tick_schedule() -> int | None:
    """Start a round if the schedule says so; returns its id."""
    from app.rounds import schedule

    return schedule.tick()


@celery_app.task(name="rounds.decide_rounds")
def decide_rounds() -> list[int]:
    """Decide rounds waiting for judgment whose campaign is complete; the jobs sent."""
    from app.rounds import judged

    return judged.sweep()
