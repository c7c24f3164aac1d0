"""Pydantic I/O of the prompts API."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.fields import Name, Text
from app.prompts.models import PromptSource, Split
from app.prompts.rules import ImportRules


class ImportIssue(BaseModel):
    line: int
    outcome: str = Field(description="rejected | merged | capped (| no_rank_task)")
    reason: str


class ImportReportOut(BaseModel):
    accepted: int
    merged: int
    capped: int
    rejected: int
    issues: list[ImportIssue] = Field(description="The first 200 lines not accepted.")


class ImportQueued(BaseModel):
    """A large upload accepted for import by a job (202); the job's outputs are the report."""

    job_id: int
    state: str
    bytes: int = Field(description="The size of the upload kept for the job")
    status_url: str = Field(description="GET it for the job's state and progress")


class PromptImportJson(BaseModel):
    """A JSON import: the prompt objects, and optionally rules and strictness."""

    prompts: list[dict[str, Any]] = Field(max_length=100_000)
    rules: ImportRules = Field(default_factory=ImportRules)
    strict: bool = Field(default=False, description="Any bad line aborts the whole import.")


class CandidateImportJson(BaseModel):
    rows: list[dict[str, Any]] = Field(max_length=100_000)
    rules: ImportRules = Field(default_factory=ImportRules)
    rank_tasks: bool = False
    overlap: int = Field(default=1, ge=1, le=50)
    priority: int = Field(default=0, ge=-1000, le=1000)


class CandidateReportOut(BaseModel):
    rows: int
    prompts_created: int
    prompts_reused: int
    candidates_created: int
    candidates_reused: int
    rank_tasks: int
    rejected: int
    issues: list[ImportIssue]


class PromptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str
    source: PromptSource
    end_user_id: str | None
    category: str | None
    split: Split
    meta: dict[str, Any]
    pii_counts: dict[str, int]
    created_at: datetime


class PromptPage(BaseModel):
    total: int
    items: list[PromptRead]


class PromptCounts(BaseModel):
    split: dict[str, int]
    category: dict[str, int]
    source: dict[str, int]


class UseCaseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    active: bool


class UseCaseCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=200)
    description: Text = Field(default="", max_length=5000)


class UseCaseUpdate(BaseModel):
    name: Name | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=5000)
    active: bool | None = None
