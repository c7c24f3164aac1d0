"""A round judged by people, as far as its wait: training and evaluate succeeded, and the
campaign that decides it has its compare tasks."""

from typing import Any

from sqlalchemy.orm import Session

from app.evaluation.models import Evaluation
from app.jobs import service as jobs
from app.rounds.models import Round
from tests.evaluation.factories import campaign, make_prompts, make_version


def trained_round(db: Session, *, previous: bool = True, identical: bool = False,
                  n: int = 8, generate: dict[str, Any] | None = None
                  ) -> tuple[Round, Evaluation]:
    """A round whose training and evaluate jobs succeeded, with its deciding campaign (and
    a generate stage to run once it is decided, if given)."""
    make_prompts(db, n)
    sft = make_version(db, "sft")
    policy = make_version(db, "policy", parent=sft)
    old = make_version(db, "policy") if previous else None
    rnd = Round(state="running", stages=["ppo"], config={}, promote=False,
                promote_if_better=True, evaluate={"n_prompts": n, "overlap": 1,
                                                  "judges": "held_out"},
                exclusive=True, trigger="manual", watermark={}, generate=generate)
    db.add(rnd)
    db.flush()
    for i, kind in enumerate(["export", "ppo", "evaluate"]):
        job = jobs.submit(db=db, kind=kind, config={}, round_id=rnd.id, position=i)
        job.state = "succeeded"
        if kind == "ppo":
            job.outputs = {"model_version_id": policy.id}
    baseline = old or sft
    texts = {baseline.id: "same", policy.id: "same"} if identical else None
    ev = campaign(db, None, candidates=[policy], baseline=baseline, n=n, texts=texts)
    rnd.evaluations = {"vs_previous": ev.id if old else None, "vs_sft": None if old else ev.id}
    db.flush()
    return rnd, ev
