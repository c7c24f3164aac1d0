"""JSON shapes of GET /api/v1/loop (DESIGN.md, "Rounds judged by people")."""

from datetime import datetime

from pydantic import BaseModel, Field


class LoopData(BaseModel):
    """The feedback a round trained on."""

    demonstrations: int | None = Field(description="demonstrations its SFT export took")
    rankings: int | None = Field(description="rankings its reward-model export took")
    agreement: float | None = Field(description="labelers' pooled pairwise agreement on the "
                                    "rankings made before the round started")
    agreement_ci95: list[float] | None
    n_comparisons: int


class LoopRM(BaseModel):
    val_accuracy: float | None
    labeler_ceiling: float | None = Field(description="the labelers' agreement: what an RM "
                                          "can hope to reach on their labels")


class LoopPPO(BaseModel):
    reward: float | None = Field(description="mean RM score of the kept policy, test prompts")
    kl: float | None = Field(description="KL to SFT per answer (nats), test prompts")
    sft_reward: float | None = Field(description="SFT's mean RM score on the same prompts")


class WinRate(BaseModel):
    win_rate: float | None
    ci95: list[float] | None
    n: int
    evaluation_id: int
    baseline_id: int
    state: str
    complete: bool
    rm_win_rate: float | None = Field(
        default=None, description="how often the round's RM prefers the policy on the same "
        "pairs (null: a campaign no RM scored)")
    rm_n: int | None = None


class LoopHuman(BaseModel):
    vs_sft: WinRate | None
    vs_previous: WinRate | None


class LoopWatch(BaseModel):
    flags: list[str]
    reasons: dict[str, str] = Field(description="per flag, the sentence that explains it")
    signals: dict[str, float | None]


class LoopModel(BaseModel):
    id: int
    name: str


class LoopRound(BaseModel):
    round_id: int
    state: str
    stages: list[str]
    created_at: datetime
    finished_at: datetime | None
    models: dict[str, LoopModel | None]
    data: LoopData
    rm: LoopRM
    ppo: LoopPPO
    human: LoopHuman
    watch: LoopWatch


class LoopRead(BaseModel):
    rounds: list[LoopRound] = Field(description="oldest first")
    limits: dict[str, float] = Field(description="the watch's bounds (settings RLHF_WATCH_*)")
