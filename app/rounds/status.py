"""The one-line status `rlhf-studio up` prints every few seconds while simulated labelers
work or rounds run by schedule: what has been labeled, what the loop is doing, which
policy generates the next candidates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from app.db import session_scope
from app.jobs.models import JobState
from app.queue.models import Assignment, AssignmentState, Task
from app.registry import service as registry
from app.rounds import service as rounds
from app.rounds.models import RoundState


def status_line(now: datetime | None = None) -> str:
    """`12:01:05 · 412 labels (rank 230, demonstrate 150, compare 32) · round 2 running: ppo
    40% · policy:active policy-job9 · 1 round done`."""
    with session_scope() as db:
        counts = dict(db.execute(
            select(Task.kind, func.count()).join(Assignment, Assignment.task_id == Task.id)
            .where(Assignment.state == AssignmentState.submitted).group_by(Task.kind)).all())
        recent = rounds.list_rounds(db=db, limit=200)
        live = next((r for r in recent if r.state in (RoundState.queued, RoundState.running)),
                    None)
        parts = [(now or datetime.now()).strftime("%H:%M:%S")]
        total = sum(counts.values())
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda x: -x[1]))
        parts.append(f"{total} labels" + (f" ({by_kind})" if by_kind else ""))
        if live is not None:
            current = rounds.current_jobs(db=db, round_id=live.id)
            job = next((j for j in current if j.state in (JobState.running,
                                                          JobState.cancelling)), None)
            doing = f"{job.kind} {job.progress or 0:.0%}" if job else "waiting for a worker"
            parts.append(f"round {live.id} {live.state}: {doing}")
        done = sum(r.state == RoundState.succeeded for r in recent)
        failed = sum(r.state == RoundState.failed for r in recent)
        policy = registry.alias_target(db=db, alias="policy:active")
        parts.append(f"policy:active {policy.name}" if policy else "no policy yet")
        parts.append(f"{done} round{'s' if done != 1 else ''} done"
                     + (f", {failed} failed" if failed else ""))
    return " · ".join(parts)
