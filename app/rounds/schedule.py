"""The retraining schedule: a round starts by itself every N hours and/or once enough new
feedback exists since the last round's snapshot.

A tick locks the schedule row, so two beat processes started by mistake take turns; the
round it starts moves the watermark, so one threshold crossing fires once; and the partial
unique index on live rounds refuses a second round while one runs, whoever starts it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import session_scope, utcnow
from app.jobs import service as jobs
from app.jobs.errors import JobError
from app.labeling.models import Demonstration, Ranking
from app.queue.models import Task
from app.rounds import service as rounds
from app.rounds.models import Round, TrainSchedule
from app.rounds.schemas import EvaluateSpec
from app.rounds.stage_config import STAGES, validate_config

log = logging.getLogger(__name__)


def get_schedule(*, db: Session, lock: bool = False) -> TrainSchedule:
    """The schedule (one row, created disabled on first use)."""
    stmt = select(TrainSchedule).order_by(TrainSchedule.id).limit(1)
    row = db.scalars(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        row = TrainSchedule(enabled=False, stages=list(STAGES), config={}, promote=False)
        db.add(row)
        db.flush()
    return row


def _check_when(*, enabled: bool, every_hours: float | None,
                min_new_comparisons: int | None, min_new_demonstrations: int | None) -> None:
    """422 for a period or threshold out of range, or an enabled schedule with neither."""
    if every_hours is not None and not 0.05 <= every_hours <= 24 * 365:
        raise JobError("Every N hours must be between 0.05 (3 minutes) and 8760 (a year).", 422)
    for name, value in (("new comparisons", min_new_comparisons),
                        ("new demonstrations", min_new_demonstrations)):
        if value is not None and not 1 <= value <= 10_000_000:
            raise JobError(f"The number of {name} must be between 1 and 10,000,000.", 422)
    if enabled and every_hours is None and not min_new_comparisons and not min_new_demonstrations:
        raise JobError("An enabled schedule needs a period (every N hours) or a threshold "
                       "(new comparisons or demonstrations).", 422)


def _stages(stages: list[str] | None) -> list[str]:
    """The stages asked for (all by default), 422 for an unknown one."""
    stages = list(stages or STAGES)
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise JobError(f"Unknown stage(s) {', '.join(bad) or '(none)'}; stages: "
                       f"{', '.join(STAGES)}.", 422)
    return stages


def update_schedule(*, db: Session, user: User | None, enabled: bool,
                    every_hours: float | None, min_new_comparisons: int | None,
                    min_new_demonstrations: int | None, stages: list[str] | None = None,
                    config: dict[str, Any] | None = None, promote: bool | str = False,
                    generate: dict[str, Any] | None = None,
                    evaluate: dict[str, Any] | None = None) -> TrainSchedule:
    """Set when rounds start by themselves, and how they are judged and promoted (422 for
    a schedule that makes no sense)."""
    _check_when(enabled=enabled, every_hours=every_hours,
                min_new_comparisons=min_new_comparisons,
                min_new_demonstrations=min_new_demonstrations)
    stages = _stages(stages)
    if generate is not None:
        from app.registry.generation import validate_generate

        generate = validate_generate(generate)
    evaluate = _judging(promote, evaluate)
    row = get_schedule(db=db, lock=True)
    row.enabled, row.every_hours = enabled, every_hours
    row.min_new_comparisons = min_new_comparisons
    row.min_new_demonstrations = min_new_demonstrations
    row.stages = [s for s in STAGES if s in stages]
    row.config = validate_config(config or {}, stages)
    row.promote, row.generate = promote is True, generate
    row.promote_if_better, row.evaluate = promote == "if_better", evaluate
    row.updated_by_id, row.updated_at = user.id if user else None, utcnow()
    db.flush()
    return row


def _judging(promote: bool | str, evaluate: dict[str, Any] | None) -> dict[str, Any] | None:
    """A scheduled round's campaign, checked as a round's is (422 with why)."""
    if promote not in (True, False, "if_better"):
        raise JobError('promote must be true, false or "if_better".', 422)
    if promote == "if_better" and evaluate is None:
        evaluate = {}  # the default campaign, as a round started by hand gets
    try:
        return (EvaluateSpec.model_validate(evaluate).model_dump()
                if evaluate is not None else None)
    except ValidationError as exc:
        raise JobError(f"evaluate: {exc.errors()[0]['msg']}", 422) from None


def new_feedback(*, db: Session) -> dict[str, int]:
    """Comparisons and demonstrations submitted since the newest round's watermark.

    A ranking of K candidates yields K·(K−1)/2 comparisons (fewer with ties; counted in
    full here, as a threshold needs no more precision).
    """
    last = db.scalars(select(Round).order_by(Round.id.desc()).limit(1)).first()
    mark = last.watermark if last else {}
    k = func.json_array_length(Task.candidate_ids)
    comparisons = db.scalar(
        select(func.coalesce(func.sum(k * (k - 1) / 2), 0)).select_from(Ranking)
        .join(Task, Task.id == Ranking.task_id)
        .where(Ranking.id > mark.get("ranking_id", 0))) or 0
    demonstrations = db.scalar(select(func.count()).select_from(Demonstration).where(
        Demonstration.id > mark.get("demonstration_id", 0))) or 0
    return {"comparisons": int(comparisons), "demonstrations": int(demonstrations)}


def due(*, db: Session, row: TrainSchedule) -> str | None:
    """Why the schedule fires now, or None."""
    if not row.enabled:
        return None
    now = utcnow()
    if row.every_hours and (row.last_fired_at is None or
                            now - row.last_fired_at >= timedelta(hours=row.every_hours)):
        return f"every {row.every_hours:g} h"
    if row.min_new_comparisons or row.min_new_demonstrations:
        return _threshold_crossed(row, new_feedback(db=db))
    return None


def _threshold_crossed(row: TrainSchedule, fresh: dict[str, int]) -> str | None:
    """The new feedback that reached its threshold (comparisons first), or None."""
    if row.min_new_comparisons and fresh["comparisons"] >= row.min_new_comparisons:
        return f"{fresh['comparisons']} new comparisons"
    if row.min_new_demonstrations and fresh["demonstrations"] >= row.min_new_demonstrations:
        return f"{fresh['demonstrations']} new demonstrations"
    return None


def tick() -> int | None:
    """Start the scheduled round if it is due and none runs; returns the new round's id."""
    with session_scope() as db:
        row = get_schedule(db=db, lock=True)
        reason = due(db=db, row=row)
        if reason is None or rounds.live_round(db=db) is not None:
            return None
        try:
            rnd = rounds.create_round(db=db, user=None, stages=row.stages, config=row.config,
                                      promote="if_better" if row.promote_if_better
                                      else row.promote, evaluate=row.evaluate,
                                      generate=row.generate,
                                      trigger="schedule", schedule_id=row.id)
        except JobError as exc:  # too little data, or a round started meanwhile
            log.info("schedule due (%s) but no round started: %s", reason, exc)
            row.last_fired_at = utcnow() if row.every_hours else row.last_fired_at
            return None
        row.last_fired_at = utcnow()
        round_id = rnd.id
        first = rounds.current_jobs(db=db, round_id=round_id)[0].id
        log.info("schedule started round %s (%s)", round_id, reason)
    jobs.dispatch([first])
    return round_id
