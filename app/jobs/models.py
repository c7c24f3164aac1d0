"""Jobs, the engine's long work, and their metrics.

PostgreSQL is the truth about long work: a job row says what state it is in, which worker
holds it and when that worker last proved it was alive (its heartbeat). The broker only
carries the wake-up call; a lost message or a dead worker is repaired from these rows.
"""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelling = "cancelling"
    cancelled = "cancelled"


LIVE_STATES = (JobState.queued, JobState.running, JobState.cancelling)
ENDED_STATES = (JobState.succeeded, JobState.failed, JobState.cancelled)


def in_values(column: str, values: type[enum.StrEnum]) -> str:
    """A CHECK that a column holds one of an enum's values."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Job(Base):
    """One piece of long work of a registered kind, alone or one stage of a round (the
    rounds layer, app.rounds, owns that table and moves a round along as its jobs end)."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(in_values("state", JobState), name="state"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        CheckConstraint("attempt >= 1", name="attempt"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_round_id", "round_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    round_id: Mapped[int | None] = mapped_column(
        ForeignKey("rounds.id", ondelete="RESTRICT"), nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # order within the round
    queue: Mapped[str] = mapped_column(String(20), default="default")
    state: Mapped[str] = mapped_column(String(12), default=JobState.queued)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="RESTRICT"), nullable=True)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)  # host:pid
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobMetric(Base):
    """One reported step of a job: append-only, `values` keyed TRL-style (loss, objective/kl…)."""

    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_id_step", "job_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
