"""Tasks (units of labeling work) and assignments (one user's lease on a task)."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class TaskKind(enum.StrEnum):
    demonstrate = "demonstrate"
    rank = "rank"
    rate = "rate"
    write_prompt = "write_prompt"
    compare = "compare"  # two outputs of one prompt, judged blind (app/evaluation)


class TaskState(enum.StrEnum):
    open = "open"
    closed = "closed"


class AssignmentState(enum.StrEnum):
    leased = "leased"
    submitted = "submitted"
    skipped = "skipped"
    expired = "expired"


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_next", "kind", "state", "priority", "id"),
        Index("ix_tasks_prompt_id", "prompt_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[TaskKind] = mapped_column(
        Enum(TaskKind, name="task_kind", native_enum=False, length=20)
    )
    prompt_id: Mapped[int | None] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), nullable=True
    )
    candidate_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    required_labels: Mapped[int] = mapped_column(Integer, default=1)
    done_labels: Mapped[int] = mapped_column(Integer, default=0)
    # Live leases, kept in the lease/submit/skip/expire transactions so the next-task filter
    # `done_labels + leased_labels < required_labels` needs no aggregate over assignments.
    leased_labels: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_answer: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. prompt_kind
    state: Mapped[TaskState] = mapped_column(
        Enum(TaskState, name="task_state", native_enum=False, length=10), default=TaskState.open
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "user_id", name="uq_assignments_task_user"),
        Index("ix_assignments_user_state", "user_id", "state"),
        Index("ix_assignments_state_expires", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[AssignmentState] = mapped_column(
        Enum(AssignmentState, name="assignment_state", native_enum=False, length=10),
        default=AssignmentState.leased,
    )
    display_order: Mapped[list[int]] = mapped_column(JSON, default=list)  # candidate ids
    leased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    skip_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)


# The next-task query walks one of these in order and stops at the first row it may take.
# Only open tasks are in them, so closed tasks cost nothing however many there are. The
# slot counters are deliberately not in the predicate: lease, skip and submit then update
# no indexed column, so PostgreSQL can do them as HOT updates (no new index entries, no
# dead entries piling up at the front of the index); the few open tasks whose slots are
# all leased are filtered on the heap row (docs/queue.md).
OPEN = "state = 'open'"
Index(
    "ix_tasks_open_kind", Task.kind, Task.priority.desc(), Task.id,
    postgresql_where=text(OPEN), sqlite_where=text(OPEN),
)
Index(
    "ix_tasks_open_any", Task.priority.desc(), Task.id,
    postgresql_where=text(OPEN), sqlite_where=text(OPEN),
)
