"""Rounds of the loop and the retraining schedule that starts them."""

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
from app.jobs.models import in_values


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


class Round(Base):
    """One run of the pipeline: export → SFT → RM → PPO (→ promote → generate)."""

    __tablename__ = "rounds"
    __table_args__ = (
        CheckConstraint(in_values("state", RoundState), name="state"),
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
