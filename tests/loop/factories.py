"""Rounds with their model versions, exports and judged campaigns, for the loop's tests."""

import itertools
from typing import Any

from sqlalchemy.orm import Session

from app.auth.models import User
from app.evaluation.models import Evaluation, EvaluationItem, Judgment
from app.jobs.models import Job
from app.queue.models import Task
from app.registry.models import ModelVersion
from app.rounds.models import Round
from tests.evaluation.factories import campaign, make_prompts, make_version
from tests.factories import finished, make_user

_keys = itertools.count(1)

# What PPO records on its test prompts (training/ppo.py): the policy's, then SFT's.
SFT_FIGURES = {"rm_score": 0.10, "mean_length": 20.0, "at_limit_share": 0.05,
               "no_eos_share": 0.05, "repeated_ngram_share": 0.04, "distinct_2": 0.80}


def ppo_metrics(*, rm_score: float, kl: float, **policy: float) -> dict[str, Any]:
    """A policy's metrics: its test figures (SFT's unless given) beside SFT's."""
    mine = {**SFT_FIGURES, "rm_score": rm_score, "kl": kl, **policy}
    return {**{f"test_{k}": v for k, v in mine.items()},
            **{f"sft_test_{k}": v for k, v in SFT_FIGURES.items()}}


def make_round(db: Session, *, metrics: dict[str, Any] | None = None, rankings: int = 40,
               demonstrations: int = 12, val_accuracy: float = 0.66,
               state: str = "succeeded") -> tuple[Round, dict[str, ModelVersion]]:
    """A finished round with its export job and sft, rm and (with metrics) policy versions."""
    rnd = Round(state=state, stages=["sft", "rm", "ppo"], config={}, promote=False,
                watermark={})
    db.add(rnd)
    db.flush()
    db.add(Job(kind="export", round_id=rnd.id, position=0, state="succeeded",
               outputs={"snapshots": {"sft": {"id": 1, "rows": demonstrations},
                                      "grouped": {"id": 2, "rows": rankings}}}))
    versions = {"sft": make_version(db, "sft", name=f"sft-r{rnd.id}")}
    versions["rm"] = make_version(db, "rm", name=f"rm-r{rnd.id}",
                                  metrics={"val_accuracy": val_accuracy})
    if metrics is not None:
        versions["policy"] = make_version(db, "policy", name=f"policy-r{rnd.id}",
                                          parent=versions["sft"], metrics=metrics)
    for v in versions.values():
        v.round_id = rnd.id
    db.flush()
    return rnd, versions


def judged(db: Session, *, candidate: ModelVersion, baseline: ModelVersion, wins: int,
           losses: int, ties: int = 0, judge: User | None = None) -> Evaluation:
    """A campaign of one candidate against a baseline, judged: wins, then losses, then ties
    (one judgment per prompt)."""
    n = wins + losses + ties
    make_prompts(db, n)
    ev = campaign(db, None, candidates=[candidate], baseline=baseline, n=n, judges="all")
    judge = judge or make_user(db)
    items = list(db.query(EvaluationItem).filter_by(evaluation_id=ev.id)
                 .order_by(EvaluationItem.id))
    outcomes = ["candidate"] * wins + ["baseline"] * losses + ["tie"] * ties
    for item, outcome in zip(items, outcomes, strict=True):
        task = db.get(Task, item.task_id)
        assert task is not None
        a = finished(db, task, judge)
        db.add(Judgment(evaluation_id=ev.id, item_id=item.id, task_id=task.id,
                        assignment_id=a.id, user_id=judge.id,
                        choice={"candidate": "a", "baseline": "b"}.get(outcome, "tie"),
                        outcome=outcome, display_order=list(task.candidate_ids),
                        seconds_spent=10, idempotency_key=f"loop-{next(_keys)}"))
    db.flush()
    return ev
