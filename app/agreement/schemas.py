"""JSON shapes of the agreement API (the summary keeps DESIGN.md's public contract)."""

from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from app.fields import Day, Moment


class AgreementQuery(BaseModel):
    """Filters shared by the page, the API and the CSV (a bare date is a whole UTC day)."""

    kind: Literal["rank", "rate"] = "rank"
    since: Day | Moment | None = Field(None, description="from this date or time (UTC)")
    until: Day | Moment | None = Field(None, description="up to this date (inclusive)")
    group: Literal["all", "training", "held_out"] = "all"


# The filters as a route's query string (the page, the CSV and the JSON API).
AgreementParams = Annotated[AgreementQuery, Query()]


class Share(BaseModel):
    pairwise_agreement: float | None
    n_comparisons: int
    ci95: list[float] | None


class CategoryShare(Share):
    category: str


class LabelerStats(BaseModel):
    user_id: int
    email: str
    name: str
    held_out: bool
    pairwise_agreement: float | None
    n_comparisons: int
    ci95: list[float] | None
    kendall_tau_b: float | None
    n_tasks: int
    tasks_per_hour: float | None
    median_seconds: float | None
    skip_rate: float | None
    n_skipped: int
    gold_accuracy: float | None
    n_gold: int
    position_bias_observed: float | None
    position_bias_expected: float | None
    position_bias_ratio: float | None


class PositionBias(BaseModel):
    observed: float | None
    expected: float | None
    ratio: float | None
    n: int


class LikertAlpha(BaseModel):
    alpha: float | None
    n_units: int
    n_ratings: int


class FlagKappa(BaseModel):
    flag: str
    kappa: float | None
    n_units: int
    n_flagged: int


class FiltersRead(BaseModel):
    kind: str
    group: str
    since: str | None
    until: str | None


class AgreementSummary(Share):
    """Pooled pairwise agreement over every task, labeler pair and candidate pair."""

    kendall_tau_b: float | None
    n_rankings: int | None = None
    n_ratings: int | None = None
    n_tasks_compared: int | None = None
    n_labeler_pairs: int | None = None
    by_group: dict[str, Share]
    by_category: list[CategoryShare]
    gold_accuracy: float | None
    n_gold: int
    position_bias: PositionBias | None
    likert_alpha: LikertAlpha
    flag_kappa: list[FlagKappa]
    reference: dict[str, float]
    filters: FiltersRead
    per_labeler: list[LabelerStats]


class LabelerRef(BaseModel):
    user_id: int
    email: str
    name: str
    held_out: bool


class PairCell(BaseModel):
    user_a: int
    user_b: int
    pairwise_agreement: float
    n_comparisons: int


class AgreementPairs(BaseModel):
    filters: FiltersRead
    labelers: list[LabelerRef]
    pairs: list[PairCell]


class WeekPoint(BaseModel):
    model_config = ConfigDict(extra="allow")

    week: str
    pairwise_agreement: float | None
    n_comparisons: int
    gold_accuracy: float | None


class AgreementTrends(BaseModel):
    filters: FiltersRead
    reference: dict[str, float]
    weeks: list[WeekPoint]
