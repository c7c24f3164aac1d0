"""Evaluation campaigns: candidate versions against a baseline, judged blind by people.

A campaign owns items (one prompt, the baseline's output and one candidate's output; each
item is one `compare` task in the queue) and the judgments labelers submit on them.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow

CHOICES = ("a", "b", "tie", "both_bad")  # as the labeler answered, relative to the slots
OUTCOMES = ("candidate", "baseline", "tie", "both_bad")  # what that means for the campaign


class Evaluation(Base):
    """A campaign: which versions, which prompts, how they were sampled, who judges."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    baseline_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    model_ids: Mapped[list[int]] = mapped_column(JSON)  # the candidates, in the asked order
    n_prompts: Mapped[int] = mapped_column(Integer)
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    judges: Mapped[str] = mapped_column(String(10), default="held_out")  # held_out | all
    # The same settings for every side: temperature, top_p, max_new_tokens, seed.
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prompt_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # Why each prompt may be used: split and the versions' training snapshots (recorded).
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # generating (a job samples the outputs) → labeling (the tasks exist) → complete (all
    # judged, closed by hand, or nothing to judge), or failed.
    state: Mapped[str] = mapped_column(String(12), default="generating")
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True
    )
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    identical_pairs: Mapped[int] = mapped_column(Integer, default=0)  # never made into tasks
    closed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why complete
    # A round's campaign: how often the RM the round trained against prefers each candidate
    # on the pairs people judge, {"reward_model_id", "by_model": {"<id>": {"win_rate", "n",
    # "ties"}}} (app/evaluation/generation.py: score_pairs); None where nobody scored them.
    rm_verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvaluationItem(Base):
    """One prompt with the baseline's and one candidate's output: one compare task."""

    __tablename__ = "evaluation_items"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "prompt_id", "model_id",
                         name="uq_evaluation_items_prompt_model"),
        # A pair of outputs is judged under one task only, so nobody can meet it twice.
        UniqueConstraint("baseline_candidate_id", "candidate_id",
                         name="uq_evaluation_items_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), unique=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    baseline_candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE")
    )
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))


class Judgment(Base):
    """A labeler's answer on one item: which slot won (or tie / both bad), and ratings."""

    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_judgments_user_key"),
        Index("ix_judgments_evaluation_id", "evaluation_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("evaluation_items.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), unique=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    choice: Mapped[str] = mapped_column(String(10))  # a | b | tie | both_bad
    outcome: Mapped[str] = mapped_column(String(10))  # candidate | baseline | tie | both_bad
    display_order: Mapped[list[int]] = mapped_column(JSON)  # [slot A, slot B] candidate ids
    # Optional per output: {"<candidate id>": {"likert": 1..7, "flags": [...]}}.
    ratings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seconds_spent: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
