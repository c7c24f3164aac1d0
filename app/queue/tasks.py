"""Celery work of the queue: the beat task that frees the slots of lapsed leases."""

from app.db import session_scope
from app.jobs.broker import celery_app
from app.queue import service as queue


@celery_app.task(name="queue.expire_leases")
def expire_leases() -> int:
    """Expire every lapsed lease; safe to run twice (only leased rows past expiry change)."""
    with session_scope() as db:
        return queue.expire_leases(db=db)
