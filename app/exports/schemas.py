"""Pydantic I/O of exports: the request, its filters, and a snapshot as the API shows it."""

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app import errors
from app.fields import Id, Moment, Offset
from app.prompts.models import Split
from app.queue.models import TaskKind

ExportKind = Literal["sft", "rankings", "comparisons", "grouped", "ratings", "prompts"]
ExportFormat = Literal["jsonl", "parquet"]
KINDS: tuple[str, ...] = ("sft", "rankings", "comparisons", "grouped", "ratings", "prompts")
FORMATS: tuple[str, ...] = ("jsonl", "parquet")


class ExportFilters(BaseModel):
    """Which source rows go into a snapshot; every filter given must hold (AND)."""

    model_config = ConfigDict(extra="forbid")

    split: Split | None = None
    since: Moment | None = Field(default=None, description="created_at >= since")
    until: Moment | None = Field(default=None, description="created_at < until")
    task_kind: TaskKind | None = None
    labeler_ids: list[Id] | None = Field(default=None, min_length=1, max_length=1000)
    held_out: bool | None = Field(
        default=None, description="only held-out (true) or only training (false) labelers"
    )
    model_version_id: Id | None = None
    min_agreement: float | None = Field(default=None, ge=0.0, le=1.0)
    max_id: Offset | None = Field(
        default=None, description="highest source row id (a manifest's source.max_id)"
    )
    include_rejected: bool | None = Field(
        default=None, description="sft and prompts: also demonstrations and labeler-written "
        "prompts a reviewer rejected (left out unless true)")

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A date without a zone is read as UTC, the zone every stored timestamp is in.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _ordered_range(self) -> "ExportFilters":
        if self.since and self.until and self.since >= self.until:
            raise ValueError("'since' must be before 'until'")
        return self

    def given(self) -> dict[str, Any]:
        """The filters that were set, as JSON-able values (what the manifest records)."""
        return self.model_dump(mode="json", exclude_none=True)


class ExportCreate(BaseModel):
    """A request for a new snapshot."""

    model_config = ConfigDict(extra="forbid")

    kind: ExportKind
    format: ExportFormat = "jsonl"
    chat: bool = Field(default=False, description="sft only: {'messages': [...]} rows")
    filters: ExportFilters = Field(default_factory=ExportFilters)


class SnapshotRead(BaseModel):
    """A snapshot as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    format: str
    filters: dict[str, Any]
    options: dict[str, Any]
    state: str
    progress: float
    rows: int
    sha256: str | None
    manifest: dict[str, Any]
    error: str | None
    created_by_id: int | None
    created_at: datetime
    finished_at: datetime | None
    download_url: str | None = None
    manifest_url: str | None = None

    @model_validator(mode="after")
    def _links(self) -> "SnapshotRead":
        if self.state == "done":
            self.download_url = f"/api/v1/exports/{self.id}/download"
            self.manifest_url = f"/api/v1/exports/{self.id}/download?file=manifest"
        return self


def from_form(form: dict[str, str]) -> ExportCreate:
    """An ExportCreate from the page's form fields (empty fields are unset)."""
    values = {k: v.strip() for k, v in form.items() if v is not None and v.strip() != ""}
    filters: dict[str, Any] = {
        k: values[k] for k in ("split", "since", "until", "task_kind", "model_version_id",
                               "min_agreement", "max_id", "held_out", "include_rejected")
        if k in values
    }
    if "labeler_ids" in values:
        filters["labeler_ids"] = [p for p in values["labeler_ids"].replace(",", " ").split()]
    return ExportCreate.model_validate({
        "kind": values.get("kind", ""),
        "format": values.get("format", "jsonl"),
        "chat": values.get("chat") in ("true", "on", "1"),
        "filters": filters,
    })


def describe(exc: ValidationError) -> str:
    """A validation error as sentences a person can act on."""
    return errors.describe(errors.validation_errors(exc.errors()))
