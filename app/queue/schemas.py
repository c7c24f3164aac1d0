"""Pydantic I/O of the queue API."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.fields import Id, JsonValue, Text
from app.prompts.models import PromptKind
from app.queue.models import TaskKind, TaskState


class PromptOut(BaseModel):
    id: int
    text: str


class CandidateOut(BaseModel):
    id: int
    text: str


class TaskOut(BaseModel):
    """A leased task as the labeler's client sees it (never the gold answer)."""

    task_id: int
    assignment_id: int
    kind: TaskKind
    prompt: PromptOut | None
    candidates: list[CandidateOut] = Field(description="In this assignment's display order.")
    expires_at: datetime
    params: dict[str, Any] = Field(default_factory=dict)


class LeaseOut(BaseModel):
    assignment_id: int
    expires_at: datetime


class SkipIn(BaseModel):
    reason: Text | None = Field(default=None, max_length=200)


class SkipOut(BaseModel):
    assignment_id: int
    state: Literal["skipped"] = "skipped"


class RankItem(BaseModel):
    prompt_id: Id
    candidate_ids: list[Id] = Field(min_length=4, max_length=9)
    gold: bool = False
    gold_answer: JsonValue = None


class BulkCreate(BaseModel):
    """Tasks to make in bulk; the fields used depend on `kind`."""

    kind: TaskKind
    overlap: int = Field(default=1, ge=1, le=50)
    priority: int = Field(default=0, ge=-1000, le=1000)
    prompt_ids: list[Id] | None = Field(
        default=None, description="demonstrate: these prompts; omitted: every train prompt "
        "without a demonstrate task.")
    rank: list[RankItem] = Field(default_factory=list, description="rank: one task per item.")
    candidate_ids: list[Id] = Field(default_factory=list, description="rate: one per candidate.")
    gold: bool = False
    gold_answer: JsonValue = None
    prompt_kind: PromptKind = PromptKind.plain
    count: int = Field(default=1, ge=1, le=10_000)
    use_case_ids: list[Id] | None = None


class BulkCreated(BaseModel):
    created: int
    task_ids: list[int] = Field(default_factory=list, description="Empty for the every-train-"
                                "prompt form, which may make very many.")


class Activity(BaseModel):
    """Work happening now (the tasks page refreshes it)."""

    window_minutes: int
    submitted: int = Field(description="Submissions in the last window_minutes.")
    per_minute: float
    active_labelers: int = Field(description="Labelers who submitted in the window or hold "
                                             "a live lease now.")
    leased_now: int
    at: datetime


class TaskStat(BaseModel):
    kind: TaskKind
    state: TaskState
    tasks: int
    done_labels: int
    required_labels: int
    leased_labels: int
