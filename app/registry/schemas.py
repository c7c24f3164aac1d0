"""Pydantic I/O of model versions, aliases and generation."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.fields import Id, JsonObject


class ModelRead(BaseModel):
    """A version as GET /api/v1/models returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    name: str
    parent_id: int | None
    snapshot_ids: list[int] = []
    job_id: int | None
    round_id: int | None
    metrics: dict[str, Any]
    config: dict[str, Any] = {}
    aliases: list[str] = []
    generate_job_id: int | None = None  # set by promote when it started a generate job
    sha256: str | None
    path: str
    created_at: datetime


class Lineage(BaseModel):
    version: ModelRead
    ancestors: list[ModelRead]
    children: list[ModelRead]


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["sft", "rm", "policy"] = Field(description="sft | rm | policy")


class AliasEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    alias: str
    from_version_id: int | None
    to_version_id: int
    action: str
    user_id: int | None
    created_at: datetime


class GenerateRequest(BaseModel):
    """POST /api/v1/generate."""

    model_config = ConfigDict(extra="forbid")

    model_id: Id | None = None
    mix: list[JsonObject] | None = None
    k: int = Field(default=4, ge=4, le=9)
    n_prompts: int = Field(default=50, ge=1, le=100_000)
    prompt_ids: list[Id] | None = None
    overlap: int = Field(default=1, ge=1, le=20)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_new_tokens: int = Field(default=48, ge=1, le=4096)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = Field(default=0, ge=0, lt=2**31)


class JobAccepted(BaseModel):
    job_id: int
