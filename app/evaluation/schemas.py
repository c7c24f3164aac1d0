"""Pydantic I/O of evaluation campaigns (DESIGN.md, "Contracts of the loop")."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.fields import Id, Text

Judges = Literal["held_out", "all"]


class Sampling(BaseModel):
    """How both sides are sampled: the same settings for the baseline and every candidate."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.7, gt=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_new_tokens: int | None = Field(
        default=None, ge=1, le=4096,
        description="None: the candidate policies' own rollout length (their manifest).")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class EvaluationCreate(BaseModel):
    """A campaign: candidate versions against a baseline on N test prompts."""

    model_config = ConfigDict(extra="forbid")

    model_ids: list[Id] = Field(min_length=1, max_length=20)
    baseline_id: Id | None = Field(default=None, description="None: the active SFT.")
    n_prompts: int | None = Field(
        default=None, ge=1, le=10_000,
        description="None: every eligible test prompt, up to 100.")
    overlap: int = Field(default=1, ge=1, le=50)
    judges: Judges = "held_out"
    name: Text = Field(default="", max_length=200)
    sampling: Sampling = Field(default_factory=Sampling)
    prompt_ids: list[Id] | None = Field(
        default=None, max_length=10_000,
        description="These test prompts (n_prompts of them) instead of a random sample.")


class EvaluationCreated(BaseModel):
    id: int
    job_id: int | None = None
    state: str


class EvaluationRead(BaseModel):
    """A campaign as staff see it."""

    id: int
    name: str
    baseline_id: int
    model_ids: list[int]
    n_prompts: int
    overlap: int
    judges: str
    sampling: dict[str, Any]
    state: str
    job_id: int | None
    error: str | None
    identical_pairs: int
    closed_reason: str | None = None
    completed_at: datetime | None = None
    items: int
    judgments: int
    created_at: datetime
    rm_verdict: dict[str, Any] | None = Field(
        default=None, description='A round\'s campaign: how often the RM the round trained '
        'against prefers each candidate on the pairs people judge, {"reward_model_id", '
        '"by_model": {"<id>": {"win_rate", "n", "ties"}}}')


class ModelResult(BaseModel):
    """One candidate against the baseline. `ties` and `both_bad` are shares of `n`."""

    model_id: int
    name: str
    win_rate: float | None
    ci95: list[float] | None
    n: int
    wins: int
    losses: int
    ties: float | None
    both_bad: float | None
    n_ties: int
    n_both_bad: int
    n_prompts: int
    position_a: float | None = Field(description="Decisive judgments that picked slot A.")


class BTScore(BaseModel):
    model_id: int
    name: str
    score: float
    ci95: list[float] | None


class LabelerResult(BaseModel):
    user_id: int
    email: str = ""
    name: str = ""
    n: int
    win_rate: float | None
    ties: float | None
    both_bad: float | None
    position_a: float | None
    agreement: float | None = Field(description="Share of others on the same items who "
                                                "answered the same.")
    n_pairs: int


class Rate(BaseModel):
    value: float | None
    ci95: list[float] | None
    n: int


class AutomaticSignal(BaseModel):
    """Numbers recorded by training, never mixed into the human judgments."""

    model_id: int
    name: str
    kind: str
    rm_score: float | None
    kl_to_sft: float | None
    heldout_lm_loss: float | None
    initial_heldout_lm_loss: float | None
    sources: dict[str, str]


class EvaluationResults(BaseModel):
    id: int
    name: str
    state: str
    closed_reason: str | None = None
    baseline_id: int
    baseline_name: str
    results: list[ModelResult]
    bradley_terry: list[BTScore]
    per_labeler: list[LabelerResult]
    agreement: float | None
    agreement_pairs: int
    position_bias: Rate
    identical_pairs: int
    judgments: int
    required: int
    automatic: list[AutomaticSignal]


class Verdict(BaseModel):
    """Whether promoting a policy should ask for confirmation, and why."""

    model_id: int
    campaigns: int = Field(description="Campaigns with judgments of this version.")
    evaluation_id: int | None
    baseline_id: int | None
    win_rate: float | None
    ci95: list[float] | None
    needs_confirmation: bool
    reason: str | None
