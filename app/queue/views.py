"""Read-only views of tasks for the researchers' pages."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.queue.models import Task


def recent_tasks(*, db: Session, limit: int = 30) -> list[Any]:
    """The newest tasks, each with what its page shows in a list."""
    return list(db.scalars(select(Task).order_by(Task.id.desc()).limit(limit)))
