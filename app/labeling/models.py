"""What labelers submit: demonstrations, rankings and ratings, each idempotent per user."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Demonstration(Base):
    __tablename__ = "demonstrations"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_demonstrations_user_key"),
        Index("ix_demonstrations_prompt_id", "prompt_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="RESTRICT"))
    text: Mapped[str] = mapped_column(Text)
    seconds_spent: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # A researcher's review: None until reviewed, then "accepted" or "rejected".
    review: Mapped[str | None] = mapped_column(String(10), nullable=True)
    review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Ranking(Base):
    """An ordered partition of a task's candidates: groups of candidate ids, best first."""

    __tablename__ = "rankings"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_rankings_user_key"),
        Index("ix_rankings_task_id", "task_id"),
        Index("ix_rankings_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="RESTRICT"))
    groups: Mapped[list[list[int]]] = mapped_column(JSON)
    display_order: Mapped[list[int]] = mapped_column(JSON)
    seconds_spent: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Rating(Base):
    """A Likert score and flags for one candidate: a rate task, or part of a ranking."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_ratings_user_key"),
        # One score per output of a ranking; one rating per rate assignment (below).
        UniqueConstraint("ranking_id", "candidate_id", name="uq_ratings_ranking_candidate"),
        Index("ix_ratings_candidate_id", "candidate_id"),
        CheckConstraint("likert BETWEEN 1 AND 7", name="likert_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    ranking_id: Mapped[int | None] = mapped_column(
        ForeignKey("rankings.id", ondelete="CASCADE"), nullable=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="RESTRICT"))
    likert: Mapped[int] = mapped_column(Integer)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    seconds_spent: Mapped[int] = mapped_column(Integer, default=0)
    # NULL for the ratings stored with a ranking (the ranking carries the key).
    idempotency_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The paper's metadata flags (PAPER.md), snake_case as in DESIGN.md's public contract.
FLAGS = (
    "fails_instruction",
    "inappropriate_for_assistant",
    "hallucination",
    "satisfies_constraint",
    "sexual_content",
    "violent_content",
    "encourages_violence",
    "denigrates_protected_class",
    "harmful_advice",
    "expresses_opinion",
    "moral_judgment",
)


class Draft(Base):
    """The latest autosaved answer in progress of any task kind: one per assignment."""

    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text, default="")
    # The structured answer in progress (Likert scores, flags, placements, examples).
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The browser's clock (ms) when the text was typed: a late, older save never
    # overwrites a newer one.
    client_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Guideline(Base):
    """Markdown instructions admins write for one task kind."""

    __tablename__ = "guidelines"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    body: Mapped[str] = mapped_column(Text, default="")
    updated_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromptFlag(Base):
    """A labeler's report that a prompt contains PII, is harmful, or is unclear."""

    __tablename__ = "prompt_flags"
    __table_args__ = (
        UniqueConstraint("user_id", "prompt_id", "reason", name="uq_prompt_flags_user_prompt"),
        Index("ix_prompt_flags_prompt_id", "prompt_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True
    )
    reason: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WrittenPrompt(Base):
    """A write_prompt submission: the prompt it created, time spent, idempotency key."""

    __tablename__ = "written_prompts"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_written_prompts_user_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="RESTRICT"))
    prompt_kind: Mapped[str] = mapped_column(String(20))
    seconds_spent: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    review: Mapped[str | None] = mapped_column(String(10), nullable=True)
    review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


PROMPT_FLAG_REASONS = ("pii", "harmful", "unclear")

# A rate task's submission is one rating without a ranking: at most one per assignment, so
# a second submit of the same lease stores nothing (ON CONFLICT DO NOTHING) whatever its key.
_STANDALONE = "ranking_id IS NULL"
Index("uq_ratings_rate_assignment", Rating.assignment_id, unique=True,
      postgresql_where=text(_STANDALONE), sqlite_where=text(_STANDALONE))
