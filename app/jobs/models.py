"""Rounds of the loop, the jobs they are made of, their metrics, and the retraining schedule.

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
    text,
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


class RoundState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    # Trained and evaluated; promotion waits for people's judgments (promote "if_better").
    awaiting_judgment = "awaiting_judgment"


# Rounds that hold the one-live-round slot: a round waiting on its campaign holds it too,
# so the policy its campaign compares against stays the active one until it is decided.
LIVE_ROUND_STATES = (RoundState.queued, RoundState.running, RoundState.awaiting_judgment)


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Round(Base):
    """One run of the pipeline: export → SFT → RM → PPO (→ promote → generate)."""

    __tablename__ = "rounds"
    __table_args__ = (
        CheckConstraint(_in("state", RoundState), name="state"),
        # At most one exclusive round is live at a time, whoever (or whatever) starts it.
        Index("uq_rounds_one_live", "exclusive", unique=True,
              postgresql_where=text(
                  "exclusive AND state IN ('queued', 'running', 'awaiting_judgment')"),
              sqlite_where=text(
                  "exclusive AND state IN ('queued', 'running', 'awaiting_judgment')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(20), default=RoundState.queued)
    stages: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # {stage: {field: value}}
    promote: Mapped[bool] = mapped_column(Boolean, default=False)
    generate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    exclusive: Mapped[bool] = mapped_column(Boolean, default=True)
    # {"n_prompts", "overlap", "judges"}: a blind campaign of the new policy after training.
    evaluate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Promote only once people prefer the new policy (`promote` is then False).
    promote_if_better: Mapped[bool] = mapped_column(Boolean, default=False)
    # {"vs_previous": campaign id | None, "vs_sft": campaign id}
    evaluations: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # What was decided about promotion and why: {"action", "reason", "by", "at", …}.
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    trigger: Mapped[str] = mapped_column(String(20), default="manual")  # manual|schedule
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("train_schedules.id", ondelete="SET NULL"), nullable=True)
    # The newest ranking and demonstration ids when the round started: what it could see.
    watermark: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Job(Base):
    """One stage of work (export, sft, rm, ppo, generate, …), alone or in a round."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JobState), name="state"),
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


class TrainSchedule(Base):
    """When a round starts by itself: every N hours and/or once enough new feedback exists."""

    __tablename__ = "train_schedules"
    __table_args__ = (
        CheckConstraint("every_hours IS NULL OR every_hours > 0", name="every_hours"),
        CheckConstraint("min_new_comparisons IS NULL OR min_new_comparisons > 0",
                        name="min_new_comparisons"),
        CheckConstraint("min_new_demonstrations IS NULL OR min_new_demonstrations > 0",
                        name="min_new_demonstrations"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    every_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_new_comparisons: Mapped[int | None] = mapped_column(Integer, nullable=True)
    min_new_demonstrations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stages: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    promote: Mapped[bool] = mapped_column(Boolean, default=False)
    # Scheduled rounds judged by people: the campaign, and promote only if they prefer it.
    promote_if_better: Mapped[bool] = mapped_column(Boolean, default=False)
    evaluate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    generate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
