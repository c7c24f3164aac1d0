"""Pydantic I/O of rounds, jobs, metrics and the schedule."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from app.fields import Int32, JsonValue, Text
from app.registry.schemas import GenerateSpec


class EvaluateSpec(BaseModel):
    """A round's blind campaign after training: the new policy against the previous active
    policy and against SFT, on test prompts, judged by people."""

    model_config = ConfigDict(extra="forbid")

    n_prompts: int | None = Field(default=None, ge=1, le=10_000,
                                  description="None: every eligible test prompt, up to 100")
    overlap: int = Field(default=1, ge=1, le=50, description="judgments per item")
    judges: Literal["held_out", "all"] = "held_out"


# true / false as before; "if_better": only once people prefer the new policy.
Promote = StrictBool | Literal["if_better"]


class RoundJudging(BaseModel):
    """How a round is judged and promoted: the one definition the API, the /jobs form and
    `rlhf-studio train round` validate with."""

    model_config = ConfigDict(extra="forbid")

    promote: Promote = False
    evaluate: EvaluateSpec | None = None


class RoundCreate(RoundJudging):
    """POST /api/v1/rounds."""

    model_config = ConfigDict(extra="forbid")

    stages: list[Text] | None = Field(default=None, description="some of sft, rm, ppo (in order)")
    config: dict[Text, dict[Text, JsonValue]] | None = Field(
        default=None, description="{stage: {field: value}}; fields of python -m training STAGE")
    generate: GenerateSpec | None = Field(
        default=None, description="after promotion: fresh candidates for the labelers")
    exclusive: bool = Field(default=True, description="refuse while another round runs")


class JobBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    state: str


class RoundCreated(BaseModel):
    round_id: int
    jobs: list[JobBrief]
    # e.g. that it trains on the same feedback and settings as an earlier round
    warnings: list[str] = Field(default_factory=list)


class JobRead(BaseModel):
    """A job as GET /api/v1/jobs/{id} returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    state: str
    progress: float
    round_id: int | None
    attempt: int
    retry_of: int | None = Field(validation_alias="retry_of_id")
    retryable: bool
    error: str | None
    config: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    queue: str
    worker: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RoundRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    state: str
    stages: list[str]
    config: dict[str, Any]
    promote: bool | Literal["if_better"]
    generate: dict[str, Any] | None
    evaluate: dict[str, Any] | None = None
    evaluations: dict[str, int | None] | None = Field(
        default=None, description='{"vs_previous", "vs_sft"}: the campaign ids')
    decision: dict[str, Any] | None = Field(
        default=None, description='{"action": waiting|held|promoted|kept|dismissed, "reason", …}')
    trigger: str
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    jobs: list[JobRead] = []
    warnings: list[str] = Field(
        default=[], description="sentences: stages that succeeded but learned or made nothing")

    @model_validator(mode="before")
    @classmethod
    def _promote_if_better(cls, data: Any) -> Any:
        # The row keeps `promote` a boolean beside `promote_if_better`; readers see the
        # value they sent.
        if getattr(data, "promote_if_better", False):
            names = [n for n in cls.model_fields if n != "jobs" and hasattr(data, n)]
            return {**{n: getattr(data, n) for n in names}, "promote": "if_better"}
        return data


class MetricsRead(BaseModel):
    series: dict[str, list[list[float]]]


class JobLog(BaseModel):
    id: int
    state: str
    log_tail: str


class ScheduleWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    every_hours: float | None = None
    min_new_comparisons: Int32 | None = None
    min_new_demonstrations: Int32 | None = None
    stages: list[Text] | None = None
    config: dict[Text, dict[Text, JsonValue]] | None = None
    promote: Promote = False
    generate: GenerateSpec | None = None
    evaluate: EvaluateSpec | None = None


class ScheduleRead(ScheduleWrite):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _promote_if_better(cls, data: Any) -> Any:
        # As RoundRead: the row keeps `promote` a boolean beside `promote_if_better`.
        if getattr(data, "promote_if_better", False):
            names = [n for n in cls.model_fields if hasattr(data, n)]
            return {**{n: getattr(data, n) for n in names}, "promote": "if_better"}
        return data

    last_fired_at: datetime | None
    updated_at: datetime
    new_feedback: dict[str, int] = {}
