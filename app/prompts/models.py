"""Prompts, their candidates (model outputs or human-written), and the use-case list."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, validates

from app.db import Base, UTCDateTime, utcnow


class PromptSource(enum.StrEnum):
    imported = "imported"
    labeler = "labeler"
    api = "api"


class Split(enum.StrEnum):
    train = "train"
    valid = "valid"
    test = "test"


class PromptKind(enum.StrEnum):
    """The three kinds of prompt labelers wrote in the paper."""

    plain = "plain"
    few_shot = "few_shot"
    user_based = "user_based"


# The paper's use-case categories (PAPER.md, "Data collection").
CATEGORIES = (
    "generation",
    "open_qa",
    "brainstorming",
    "chat",
    "rewrite",
    "summarization",
    "classification",
    "other",
    "closed_qa",
    "extraction",
)


class Prompt(Base):
    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64), unique=True)  # of the normalised text
    # The first PREFIX_MAX normalised characters, for the long-common-prefix duplicate rule:
    # a btree range scan finds prompts starting with a given prefix (C collation on
    # PostgreSQL so byte order is index order).
    norm_prefix: Mapped[str | None] = mapped_column(
        Text().with_variant(Text(collation="C"), "postgresql"), nullable=True, index=True
    )
    source: Mapped[PromptSource] = mapped_column(
        Enum(PromptSource, name="prompt_source", native_enum=False, length=20,
             create_constraint=True)
    )
    end_user_id: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True)
    category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    split: Mapped[Split] = mapped_column(
        Enum(Split, name="split", native_enum=False, length=10, create_constraint=True),
        index=True,
    )
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    pii_counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


PREFIX_MAX = 200


class Candidate(Base):
    """One response to a prompt: a model output (model set) or human-written (model NULL)."""

    __tablename__ = "candidates"
    __table_args__ = (Index("ix_candidates_prompt_id", "prompt_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), nullable=True
    )
    sampling_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("text")
    def _storable(self, _key: str, text: str) -> str:
        """The output as sampled, with NUL shown as U+FFFD: a byte-level vocabulary (the
        tiny model's) can sample it, and PostgreSQL's text refuses it, which failed the
        whole generate job or campaign. Text sent to the API with NUL is refused before this."""
        return text.replace("\x00", "\ufffd")


class UseCase(Base):
    """A use case labelers write "user-based" prompts for; admins edit the list."""

    __tablename__ = "use_cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
