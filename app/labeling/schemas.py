"""Submission bodies and answers of the labeling API (DESIGN.md's public contract)."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.fields import Id, JsonValue, Text

PromptKind = Literal["plain", "few_shot", "user_based"]


class RatingIn(BaseModel):
    """One output's Likert score and flags, as part of a rank submission."""

    likert: int = Field(ge=-1000, le=1000)
    flags: list[Text] = Field(default_factory=list)


class FewShotExample(BaseModel):
    """One input/output pair of a few-shot prompt."""

    input: Text
    output: Text


class SubmissionCreate(BaseModel):
    """Every body carries the first three fields; the rest depend on the task's kind.

    Types are checked here; what makes a submission valid (a partition of exactly the
    task's outputs, Likert 1..7, known flags, lengths) is checked by the service, so the
    pages and scripts get the same messages.
    """

    assignment_id: Id
    # The spec states the service's rules for these two (8..100 printable ASCII characters;
    # 0..86,400 seconds), so a client can tell a valid body from the schema; the service
    # still checks them, with its own sentence (400).
    idempotency_key: Text = Field(json_schema_extra={
        "minLength": 8, "maxLength": 100, "pattern": "^[ -~]+$"})
    seconds_spent: int = Field(ge=-(2**31), le=2**31 - 1,
                               json_schema_extra={"minimum": 0, "maximum": 24 * 3600})
    text: Text | None = None  # demonstrate, write_prompt
    ranking: list[list[Id]] | None = None  # rank: groups best first
    ratings: dict[Text, RatingIn] | None = None  # rank, compare: per candidate id
    likert: int | None = Field(default=None, ge=-1000, le=1000)  # rate
    flags: list[Text] | None = None  # rate
    comment: Text | None = None  # rate
    prompt_kind: PromptKind | None = None  # write_prompt
    examples: list[FewShotExample] | None = None  # write_prompt, few_shot
    choice: Id | Text | None = None  # compare: a candidate id, "a" / "b", "tie", "both_bad"


class SubmissionRead(BaseModel):
    """The stored submission and where the labeler goes next."""

    id: int
    kind: str
    task_id: int
    assignment_id: int
    next_url: str


class DraftSave(BaseModel):
    """An answer in progress: the typed text and, for forms, the rest of it as `data`."""

    text: Text = ""
    data: dict[Text, JsonValue] | None = Field(
        default=None, description="The form's state as the page keeps it (Likert scores, "
        "flags, placements, examples); omitted: left as saved.")
    client_ms: int = Field(default=0, ge=0, le=2**53, description="The page's clock (ms)")


class DraftRead(BaseModel):
    assignment_id: int
    text: str
    data: dict[str, Any] = Field(default_factory=dict)
    client_ms: int
    saved: bool = True


class PromptFlagCreate(BaseModel):
    reason: Literal["pii", "harmful", "unclear"]
    # The service's limit (COMMENT_MAX), stated in the spec; it still says so in a sentence.
    comment: Text = Field(default="", json_schema_extra={"maxLength": 2000})


class PromptFlagRead(BaseModel):
    id: int
    prompt_id: int
    reason: str
    comment: str
