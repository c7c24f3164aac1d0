"""Pydantic I/O of model versions, aliases and generation."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.fields import MAX_ID, Id, Text


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


class MixMember(BaseModel):
    """One source of candidates: a version (by id) or an alias, sampled at a temperature."""

    # The spec says what the validator below checks: an entry names one or the other.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["model_id"], "properties": {"model_id": {
            "type": "integer", "minimum": 1, "maximum": MAX_ID}}},
        {"required": ["alias"], "properties": {"alias": {"type": "string"}}}]})

    model_id: Id | None = None
    alias: Text | None = Field(default=None, max_length=100)
    temperature: float = Field(default=1.0, gt=0, le=2)

    @model_validator(mode="after")
    def _names_a_model(self) -> "MixMember":
        if self.model_id is None and self.alias is None:
            raise ValueError('each mix entry names a "model_id" or an "alias"')
        return self


class GenerateSpec(BaseModel):
    """What a generate job samples: K candidates per prompt from a mix of models. The one
    definition that POST /api/v1/generate, a round's and the schedule's `generate`, the
    /jobs form and `rlhf-studio generate` validate with."""

    model_config = ConfigDict(extra="forbid")

    model_id: Id | None = None
    mix: list[MixMember] | None = Field(default=None, min_length=1, max_length=20)
    k: int = Field(default=4, ge=4, le=9)
    n_prompts: int = Field(default=50, ge=1, le=100_000)
    prompt_ids: list[Id] | None = Field(default=None, min_length=1)
    overlap: int = Field(default=1, ge=1, le=20)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_new_tokens: int = Field(default=48, ge=1, le=4096)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = Field(default=0, ge=0, lt=2**31)


class GenerateRequest(GenerateSpec):
    """POST /api/v1/generate."""


class JobAccepted(BaseModel):
    job_id: int
