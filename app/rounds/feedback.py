"""What a round trains on and what it says about itself: the feedback each stage needs
against the round minimums (`readiness`, shown on /jobs and in a refusal), the snapshot a
round takes (`watermark`), and the sentences a finished round shows when it learned nothing
or only repeats an earlier round (`round_warnings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.jobs.errors import JobError
from app.jobs.models import Job, JobState
from app.labeling.models import Demonstration, Ranking
from app.prompts.models import Prompt, Split
from app.queue.models import Task, TaskKind, TaskState
from app.rounds.models import Round, RoundState
from app.rounds.stage_config import STAGES


def watermark(*, db: Session) -> dict[str, int]:
    """The newest ranking and demonstration ids: what a round starting now can see."""
    return {"ranking_id": db.scalar(select(func.max(Ranking.id))) or 0,
            "demonstration_id": db.scalar(select(func.max(Demonstration.id))) or 0}


@dataclass(frozen=True)
class Need:
    """What one stage needs from the data, what there is, and how to get more."""

    stage: str
    what: str  # e.g. "demonstrations on train-split prompts"
    have: int
    need: int
    how: str  # a sentence a person can act on

    @property
    def ok(self) -> bool:
        return self.have >= self.need

    def sentence(self) -> str:
        """The refusal: what the stage needs, what there is, and how to get more."""
        return (f"{STAGE_NAMES[self.stage]} needs at least {self.need} {self.what}; there "
                f"{'is' if self.have == 1 else 'are'} {self.have}. {self.how}")


STAGE_NAMES = {"sft": "SFT", "rm": "The reward model", "ppo": "PPO"}


def _open_tasks(db: Session, kind: TaskKind) -> int:
    """Labels still wanted on open tasks of this kind (train-split prompts)."""
    stmt = (select(func.coalesce(func.sum(Task.required_labels - Task.done_labels), 0))
            .join(Prompt, Prompt.id == Task.prompt_id)
            .where(Task.kind == kind, Task.state == TaskState.open, Prompt.split == Split.train))
    return int(db.scalar(stmt) or 0)


_ON_TRAIN = Prompt.split == Split.train


def _sft_need(db: Session, settings: Settings) -> Need:
    """Demonstrations on train prompts, against the round minimum."""
    have = db.scalar(select(func.count()).select_from(Demonstration)
                     .join(Prompt, Prompt.id == Demonstration.prompt_id)
                     .where(_ON_TRAIN)) or 0
    waiting = _open_tasks(db, TaskKind.demonstrate)
    how = (f"Label the {waiting} demonstrations waiting on /label" if waiting else
           "Create demonstrate tasks on train prompts (/tasks)")
    return Need("sft", "demonstrations on train-split prompts", have,
                settings.round_min_demonstrations, how + ", or let simulated "
                "labelers do it (rlhf-studio simulate --labelers 4).")


def _rm_need(db: Session, settings: Settings) -> Need:
    """Rankings on train prompts, against the round minimum."""
    have = db.scalar(select(func.count()).select_from(Ranking)
                     .join(Prompt, Prompt.id == Ranking.prompt_id).where(_ON_TRAIN)) or 0
    waiting = _open_tasks(db, TaskKind.rank)
    how = (f"Rank the {waiting} outputs sets waiting on /label" if waiting else
           "Import model outputs as rank tasks (rlhf-studio candidates import FILE "
           "--rank-tasks)")
    return Need("rm", "rankings on train-split prompts", have,
                settings.round_min_rankings, how + ", or let simulated labelers "
                "do it (rlhf-studio simulate --labelers 4).")


def _ppo_need(db: Session, settings: Settings) -> Need:
    """At least one train prompt to roll out on."""
    have = db.scalar(select(func.count()).select_from(Prompt).where(_ON_TRAIN)) or 0
    return Need("ppo", "train-split prompts to roll out on", have, 1,
                "Import prompts on /prompts (JSONL or CSV).")


# The data each stage trains on (stages not listed need none).
_NEEDS = {"sft": _sft_need, "rm": _rm_need, "ppo": _ppo_need}


def readiness(*, db: Session, stages: list[str] | None = None) -> list[Need]:
    """For each stage, the data it trains on against the round minimums, with what to do
    about a shortfall: the /jobs page shows it, and a refused round says it."""
    settings = get_settings()
    return [_NEEDS[stage](db, settings) for stage in stages or list(STAGES) if stage in _NEEDS]


def check_data(*, db: Session, stages: list[str]) -> None:
    """Refuse a round that has too little feedback to train its stages (422, with counts
    and what to do about it)."""
    for need in readiness(db=db, stages=stages):
        if not need.ok:
            raise JobError(need.sentence(), 422)


def _rm_warning(outputs: dict[str, Any], settings: Settings) -> str | None:
    """A reward model at chance on its held-out rankings."""
    accuracy = (outputs.get("metrics") or {}).get("val_accuracy")
    if accuracy is not None and accuracy < settings.round_min_rm_accuracy:
        return (f"The reward model is at chance on its held-out rankings (accuracy "
                f"{accuracy:.2f}): it has little to steer PPO by. More rankings, more "
                "epochs or a higher learning rate may help.")
    return None


def _ppo_warning(outputs: dict[str, Any], settings: Settings) -> str | None:
    """A policy that barely moved from its SFT model."""
    metrics = outputs.get("metrics") or {}
    kl = metrics.get("test_kl", metrics.get("kl"))
    if kl is not None and kl < settings.round_min_kl:
        return (f"The policy barely moved from its SFT model (KL {kl:.3f} nats): PPO's "
                "learning rate or steps are too small for this model, or its reward "
                "model gives it nothing to follow.")
    return None


def _generate_warning(outputs: dict[str, Any], settings: Settings) -> str | None:
    """A generate stage that made no rank task."""
    if outputs.get("tasks") != 0:
        return None
    why = f": {outputs['reason']}" if outputs.get("reason") else "."
    return (f"The generate stage made no new rank task{why} The next round will have no "
            "fresh outputs to rank.")


# What a succeeded stage of each kind may warn about (the others say nothing).
_WARNINGS = {"rm": _rm_warning, "ppo": _ppo_warning, "generate": _generate_warning}


def warnings(jobs: list[Job]) -> list[str]:
    """What a round's succeeded stages say about whether it learned anything: sentences for
    a reward model at chance, a policy that barely moved from its SFT, a generate stage that
    made no rank task. A round with any of these succeeded in name only."""
    settings, out = get_settings(), []
    for job in jobs:
        check = _WARNINGS.get(job.kind)
        if job.state != JobState.succeeded or check is None:
            continue
        sentence = check(job.outputs or {}, settings)
        if sentence is not None:
            out.append(sentence)
    return out


def last_snapshot(*, db: Session) -> Round | None:
    """The newest round that finished training, when no ranking or demonstration came in
    since its snapshot: a round started now would train on the same feedback."""
    last = db.scalars(select(Round).where(Round.state == RoundState.succeeded)
                      .order_by(Round.id.desc()).limit(1)).first()
    return last if last is not None and last.watermark == watermark(db=db) else None


def repeat_of(*, db: Session, rnd: Round) -> Round | None:
    """The newest earlier finished round with this round's snapshot, stages and settings
    (among the last 20): every stage is seeded, so this one trains the same models again."""
    if not rnd.watermark:
        return None
    earlier = db.scalars(select(Round).where(Round.id < rnd.id,
                                             Round.state == RoundState.succeeded)
                         .order_by(Round.id.desc()).limit(20))
    return next((r for r in earlier if r.watermark == rnd.watermark
                 and r.stages == rnd.stages and r.config == rnd.config), None)


def round_warnings(*, db: Session, rnd: Round, jobs: list[Job]) -> list[str]:
    """`warnings` of the round's newest jobs, and whether it repeats an earlier round."""
    out = warnings(jobs)
    if (same := repeat_of(db=db, rnd=rnd)) is not None:
        out.insert(0, f"Round {same.id} trained on the same feedback with the same settings "
                      "(no ranking or demonstration came in since its snapshot): every stage "
                      f"is seeded, so this round repeats round {same.id}'s models. Label new "
                      "data, or generate fresh outputs to rank, before the next round.")
    return out
