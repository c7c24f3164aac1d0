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


@celery_app.task(name="rounds.sweep_store")
def sweep_store() -> list[str]:
    """Remove the store's entries that nothing names (their worker died before registering
    them); the URLs removed. Without a store: nothing to do."""
    from app import store
    from app.db import session_scope
    from app.rounds import orphans

    shared = store.current()
    if shared is None:
        return []
    with session_scope() as db:
        return orphans.sweep(db=db, shared=shared).removed
