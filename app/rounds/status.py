"""The one-line status `rlhf-studio up` prints every few seconds while simulated labelers
work or rounds run by schedule: what has been labeled, what the loop is doing, which
policy generates the next candidates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.jobs.models import JobState
from app.queue.models import Assignment, AssignmentState, Task
from app.registry import service as registry
from app.rounds import feedback, judged, schedule
from app.rounds import service as rounds
from app.rounds.models import LIVE_ROUND_STATES, Round, RoundState, TrainSchedule


def _labels(db: Session) -> str:
    """`412 labels (rank 230, demonstrate 150, compare 32)`: submissions per task kind."""
    counts = dict(db.execute(
        select(Task.kind, func.count()).join(Assignment, Assignment.task_id == Task.id)
        .where(Assignment.state == AssignmentState.submitted).group_by(Task.kind)).all())
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda x: -x[1]))
    return f"{sum(counts.values())} labels" + (f" ({by_kind})" if by_kind else "")


def _live_round(db: Session, live: Round) -> str:
    """`round 2 running: ppo 40%`: the stage a worker runs now, or that none has it yet; for
    a round waiting on people, what it waits for and where to act; for one kept or
    dismissed, that it samples fresh candidates."""
    if live.state == RoundState.awaiting_judgment:
        return _waiting_round(db, live)
    current = rounds.current_jobs(db=db, round_id=live.id)
    job = next((j for j in current if j.state in (JobState.running, JobState.cancelling)),
               None)
    doing = f"{job.kind} {job.progress or 0:.0%}" if job else "waiting for a worker"
    verdict = (live.decision or {}).get("action")
    if verdict in ("kept", "dismissed"):  # its generate stage: judged.unpromoted_mix
        return (f"round {live.id} {verdict}, sampling fresh candidates (its policy among "
                f"them) for people to rank: {doing}")
    return f"round {live.id} {live.state}: {doing}"


def _waiting_round(db: Session, live: Round) -> str:
    """`round 1 held: people prefer it (74.6% [61.7%, 84.4%]) but the watch flagged
    kl_over_bound: promote or dismiss it on /jobs`, or `round 2 waiting for people: 12 of 63
    judgments against SFT in (/label)`."""
    decision = live.decision or {}
    if decision.get("action") == "held":
        row = ""
        if decision.get("win_rate") is not None and decision.get("ci95"):
            lo, hi = decision["ci95"]
            row = f" ({decision['win_rate']:.1%} [{lo:.1%}, {hi:.1%}])"
        flags = ", ".join(decision.get("flags") or []) or "it"
        return (f"round {live.id} held: people prefer it{row} but the watch flagged {flags}: "
                "promote or dismiss it on /jobs")
    campaign, against = judged.deciding_campaign(db, live)
    if campaign is None:
        return f"round {live.id} waiting for its campaign"
    return (f"round {live.id} waiting for people: {campaign['judgments']} of "
            f"{campaign['required']} judgments against {against} in (/label)")


def _next_round(db: Session) -> str | None:
    """With the schedule on and no round live, what the next round waits for: `next round
    waits for SFT: 3 of 8 demonstrations on train-split prompts`, or `next round at 700 new
    comparisons (412 so far)`."""
    row = db.scalars(select(TrainSchedule).order_by(TrainSchedule.id).limit(1)).first()
    if row is None or not row.enabled:
        return None
    short = next((n for n in feedback.readiness(db=db, stages=row.stages) if not n.ok), None)
    if short is not None:
        return (f"next round waits for {short.stage.upper()}: {short.have} of {short.need} "
                f"{short.what}")
    fresh = schedule.new_feedback(db=db)
    parts = [f"{want} new {what} ({fresh[what]} so far)" for what, want in (
        ("comparisons", row.min_new_comparisons), ("demonstrations", row.min_new_demonstrations))
        if want]
    if row.every_hours:
        parts.append(f"every {row.every_hours:g} h")
    return "next round at " + " or ".join(parts) if parts else None


def _rounds_done(recent: list[Round]) -> str:
    """`3 rounds done, 1 failed`."""
    done = sum(r.state == RoundState.succeeded for r in recent)
    failed = sum(r.state == RoundState.failed for r in recent)
    return f"{done} round{'s' if done != 1 else ''} done" + (f", {failed} failed" if failed else "")


def status_line(now: datetime | None = None) -> str:
    """`12:01:05 · 412 labels (rank 230, demonstrate 150, compare 32) · round 2 running: ppo
    40% · policy:active policy-job9 · 1 round done`."""
    with session_scope() as db:
        parts = [(now or datetime.now()).strftime("%H:%M:%S"), _labels(db)]
        recent = rounds.list_rounds(db=db, limit=200)
        live = next((r for r in recent if r.state in LIVE_ROUND_STATES), None)
        if live is not None:
            parts.append(_live_round(db, live))
        elif (waits := _next_round(db)) is not None:
            parts.append(waits)
        policy = registry.alias_target(db=db, alias="policy:active")
        parts.append(f"policy:active {policy.name}" if policy else "no policy yet")
        parts.append(_rounds_done(recent))
    return " · ".join(parts)
