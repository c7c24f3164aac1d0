"""Read-only views of tasks for the researchers' pages."""

from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.queue.models import Assignment, AssignmentState, Task

ACTIVITY_MINUTES = 15


def recent_tasks(*, db: Session, limit: int = 30) -> list[Any]:
    """The newest tasks, each with what its page shows in a list."""
    return list(db.scalars(select(Task).order_by(Task.id.desc()).limit(limit)))


def activity(*, db: Session, minutes: int = ACTIVITY_MINUTES) -> dict[str, Any]:
    """Work happening now: submissions in the last `minutes` (and per minute), labelers
    who submitted in that time or hold a live lease, and the live leases."""
    now = utcnow()
    since = now - timedelta(minutes=minutes)
    submitted = (Assignment.state == AssignmentState.submitted) & (
        # A task is submitted on a live lease, so finished_at >= since implies expires_at
        # >= since: the range on (state, expires_at) keeps this an index scan of recent
        # work however long the history grows.
        (Assignment.expires_at >= since) & (Assignment.finished_at >= since))
    leased = (Assignment.state == AssignmentState.leased) & (Assignment.expires_at > now)
    n_submitted, n_leased, active = db.execute(
        select(func.count().filter(submitted), func.count().filter(leased),
               func.count(Assignment.user_id.distinct()))
        .where(or_(submitted, leased))
    ).one()
    return {"window_minutes": minutes, "submitted": int(n_submitted),
            "per_minute": round(int(n_submitted) / minutes, 2),
            "active_labelers": int(active), "leased_now": int(n_leased), "at": now}
