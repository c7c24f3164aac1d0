"""Rounds: one run of the pipeline as a line of jobs, each started when the one before it
succeeded; a failed or cancelled stage stops the round, and a retry picks it up again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import Role, User
from app.db import utcnow
from app.jobs import service as jobs
from app.jobs.errors import JobError
from app.jobs.kinds import on_round_change
from app.jobs.models import Job, JobState
from app.prompts.models import Prompt, Split
from app.rounds import feedback, judged
from app.rounds.models import LIVE_ROUND_STATES, Round, RoundState
from app.rounds.schemas import EvaluateSpec
from app.rounds.stage_config import STAGES, validate_config

BUSY = "A round is already running (round {id}); wait for it or cancel it first."
WAITING = ("Round {id} is waiting for people to judge its campaign; judge it, or promote or "
           "dismiss it by hand on /jobs, first.")


def plan(stages: list[str], promote: bool, generate: dict[str, Any] | None,
         evaluate: dict[str, Any] | None = None) -> list[str]:
    """The job kinds of a round, in order (an "if_better" round adds promote later)."""
    kinds = ["export", *stages]
    if evaluate is not None:
        kinds.append("evaluate")
    if promote:
        kinds.append("promote")
        if generate is not None:
            kinds.append("generate")
    return kinds


def live_round(*, db: Session) -> Round | None:
    """The exclusive round that is queued, running or awaiting judgment, if any."""
    stmt = select(Round).where(Round.exclusive, Round.state.in_(LIVE_ROUND_STATES))
    return db.scalars(stmt).first()


def _busy(rnd: Round | None) -> str:
    if rnd is not None and rnd.state == RoundState.awaiting_judgment:
        return WAITING.format(id=rnd.id)
    return BUSY.format(id=rnd.id if rnd else "?")


def check_evaluate(*, db: Session, stages: list[str], evaluate: dict[str, Any]) -> dict[str, Any]:
    """Refuse a campaign that cannot happen (422, with why): no policy trained, nobody to
    judge it, no test prompts. The spec as stored."""
    spec = EvaluateSpec.model_validate(evaluate)
    if "ppo" not in stages:
        raise JobError(f"A round's campaign judges the policy it trains, and the stages "
                       f"{', '.join(stages)} train none: add ppo, or leave out evaluate "
                       "and \"if_better\".", 422)
    judges = select(func.count()).select_from(User).where(User.active,
                                                          User.role == Role.labeler)
    if spec.judges == "held_out":
        judges = judges.where(User.held_out)
    if not db.scalar(judges):
        who = "held-out labelers" if spec.judges == "held_out" else "active labelers"
        raise JobError(f"Nobody can judge this round's campaign: there are no {who}. Mark "
                       "some labelers held out on /users, or ask for judges \"all\".", 422)
    n = db.scalar(select(func.count()).select_from(Prompt).where(Prompt.split == Split.test))
    if not n:
        raise JobError("There are no test-split prompts to judge the new policy on: import "
                       "prompts (a share goes to the test split) first.", 422)
    if spec.n_prompts is not None and spec.n_prompts > n:
        raise JobError(f"Only {n} test prompt{'' if n == 1 else 's'} "
                       f"{'is' if n == 1 else 'are'} there; ask evaluate for at most that "
                       f"many, not {spec.n_prompts}.", 422)
    return spec.model_dump()


def _judging(db: Session, stages: list[str], promote: bool | str,
             evaluate: dict[str, Any] | None) -> dict[str, Any] | None:
    """The round's campaign as stored (None: none), after checking it can happen."""
    if promote not in (True, False, "if_better"):
        raise JobError(f'promote is true, false or "if_better", not {promote!r}.', 422)
    if promote == "if_better" and evaluate is None:
        evaluate = {}  # promoting on people's judgment needs their campaign: the defaults
    return None if evaluate is None else check_evaluate(db=db, stages=stages,
                                                        evaluate=evaluate)


def _pipeline_stages(stages: list[str] | None) -> list[str]:
    """The stages asked for (all by default) in pipeline order; 422 for an unknown one."""
    stages = list(STAGES) if stages is None else list(stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise JobError(f"Unknown stage(s) {', '.join(unknown) or '(none)'}; a round runs "
                       f"some of: {', '.join(STAGES)}.", 422)
    return [s for s in STAGES if s in stages]


def create_round(*, db: Session, user: User | None, stages: list[str] | None = None,
                 config: dict[str, dict[str, Any]] | None = None,
                 promote: bool | str = False, generate: dict[str, Any] | None = None,
                 exclusive: bool = True, trigger: str = "manual",
                 schedule_id: int | None = None,
                 evaluate: dict[str, Any] | None = None) -> Round:
    """Validate and record a round with all its jobs queued; `dispatch` starts the first."""
    stages = _pipeline_stages(stages)
    config = validate_config(config or {}, stages)
    if generate is not None:
        from app.registry.generation import validate_generate

        generate = validate_generate(generate)
    evaluate = _judging(db, stages, promote, evaluate)
    if_better = promote == "if_better"
    if exclusive and (busy := live_round(db=db)) is not None:
        raise JobError(_busy(busy), 409)
    feedback.check_data(db=db, stages=stages)
    rnd = Round(state=RoundState.queued, stages=stages, config=config, promote=promote is True,
                promote_if_better=if_better, evaluate=evaluate,
                generate=generate, exclusive=exclusive, trigger=trigger,
                schedule_id=schedule_id, watermark=feedback.watermark(db=db),
                created_by_id=user.id if user else None)
    try:
        with db.begin_nested():
            db.add(rnd)
            db.flush()
    except IntegrityError:  # another round became live between the check and the insert
        raise JobError(_busy(live_round(db=db)), 409) from None
    for position, kind in enumerate(plan(stages, promote is True, generate, evaluate)):
        jobs.submit(db=db, kind=kind, config=_job_config(kind, rnd), user=user,
                    round_id=rnd.id, position=position)
    return rnd


def _job_config(kind: str, rnd: Round) -> dict[str, Any]:
    if kind == "export":
        return {"stages": rnd.stages, "max_ids": rnd.watermark}
    if kind == "generate":
        return dict(rnd.generate or {})
    if kind == "evaluate":
        return dict(rnd.evaluate or {})
    return dict(rnd.config.get(kind, {}))


def get_round(*, db: Session, round_id: int) -> Round:
    """One round, or a 404 JobError."""
    rnd = db.get(Round, round_id)
    if rnd is None:
        raise JobError(f"There is no round {round_id}.", 404)
    return rnd


def list_rounds(*, db: Session, limit: int = 50) -> list[Round]:
    """Rounds, newest first."""
    return list(db.scalars(select(Round).order_by(Round.id.desc()).limit(limit)))


def round_jobs(*, db: Session, round_id: int) -> list[Job]:
    """A round's jobs in pipeline order, every attempt."""
    stmt = select(Job).where(Job.round_id == round_id).order_by(Job.position, Job.id)
    return list(db.scalars(stmt))


def current_jobs(*, db: Session, round_id: int) -> list[Job]:
    """The newest attempt at each position of the round."""
    newest: dict[int, Job] = {}
    for job in round_jobs(db=db, round_id=round_id):
        newest[job.position] = job
    return [newest[p] for p in sorted(newest)]


_LIVE = (JobState.running, JobState.cancelling)


def _stopped(current: list[Job]) -> Job | None:
    """The first stage that failed or was cancelled, if one did."""
    return next((j for j in current if j.state in (JobState.failed, JobState.cancelled)), None)


def _stop_after(*, rnd: Round, current: list[Job], stopped: Job) -> None:
    """A stage failed or was cancelled: skip the stages queued after it, and end the round
    in that state once no stage is still running."""
    now = utcnow()
    for job in current:
        if job.state == JobState.queued and job.position > stopped.position:
            job.state, job.finished_at, job.retryable = JobState.cancelled, now, True
            job.error = f"skipped: the {stopped.kind} stage {stopped.state}"
    if any(j.state in _LIVE for j in current):
        return
    rnd.state = RoundState.failed if stopped.state == JobState.failed else RoundState.cancelled
    rnd.error = f"{stopped.kind} (job {stopped.id}) {stopped.state}: {stopped.error or ''}"
    rnd.finished_at = now


def settle(*, db: Session, round_id: int) -> list[int]:
    """Bring the round's state in line with its jobs after one ended; return job ids to send.

    The next stage is sent when the last one succeeded; after a failure or a cancel the
    stages still queued are cancelled ("skipped") and the round ends in that state.
    """
    rnd = db.scalars(select(Round).where(Round.id == round_id).with_for_update()).first()
    if rnd is None:
        return []
    current = current_jobs(db=db, round_id=round_id)
    stopped = _stopped(current)
    states = {j.state for j in current}
    send: list[int] = []
    if stopped is not None:
        _stop_after(rnd=rnd, current=current, stopped=stopped)
    elif states <= {JobState.succeeded}:
        return _trained(db=db, rnd=rnd)
    elif states & set(_LIVE):
        rnd.state = RoundState.running
        rnd.started_at = rnd.started_at or utcnow()
    else:
        send = [j.id for j in current if j.state == JobState.queued][:1]
    db.flush()
    return send


def _trained(*, db: Session, rnd: Round) -> list[int]:
    """Every stage succeeded: the round succeeds, or waits for its campaign to decide."""
    if rnd.promote_if_better and not judged.decided(rnd):
        # Trained and evaluated: promotion waits for people (and may be decided now, if
        # the campaign had nothing to judge).
        rnd.state = RoundState.awaiting_judgment
        return judged.settle_judgment(db=db, rnd=rnd)
    rnd.state, rnd.finished_at, rnd.error = RoundState.succeeded, utcnow(), None
    db.flush()
    return []


def cancel_round(*, db: Session, round_id: int) -> Round:
    """Cancel every live job of the round (running ones stop at their next step)."""
    rnd = get_round(db=db, round_id=round_id)
    live = [j for j in current_jobs(db=db, round_id=round_id)
            if j.state in (JobState.queued, JobState.running)]
    if not live:
        raise JobError(f"Round {round_id} has {rnd.state}; there is nothing to cancel.", 409)
    for job in live:
        jobs.request_cancel(db=db, job_id=job.id)
    settle(db=db, round_id=round_id)
    return rnd


def cancel_job(*, db: Session, job_id: int) -> Job:
    """Cancel a job (a queued one at once, a running one at its next step) and bring its
    round, if it has one, in line."""
    job = jobs.request_cancel(db=db, job_id=job_id)
    if job.round_id is not None:
        settle(db=db, round_id=job.round_id)
    return job


def _check_retry(*, db: Session, rnd: Round, job: Job, current: dict[int, Job]) -> None:
    """409 unless the job is its stage's newest attempt and, for an exclusive round that
    ended, no other round is live."""
    if current.get(job.position) is not job:
        raise JobError(f"Job {job.id} was already retried; retry its newest attempt.", 409)
    if rnd.exclusive and rnd.state not in (RoundState.queued, RoundState.running):
        busy = live_round(db=db)
        if busy is not None and busy.id != rnd.id:
            raise JobError(_busy(busy), 409)


def retry_job(*, db: Session, job_id: int, user: User | None) -> Job:
    """A new attempt of a failed or cancelled job; in a round, of the stages it stopped too."""
    job = jobs.get_job(db=db, job_id=job_id, lock=True)
    if job.round_id is None:
        return jobs.new_attempt(db=db, job=job, user=user)
    rnd = db.scalars(select(Round).where(Round.id == job.round_id).with_for_update()).one()
    current = {j.position: j for j in current_jobs(db=db, round_id=rnd.id)}
    _check_retry(db=db, rnd=rnd, job=job, current=current)
    first = jobs.new_attempt(db=db, job=job, user=user)
    for position, later in sorted(current.items()):
        if position > job.position and later.state in (JobState.cancelled, JobState.failed):
            jobs.new_attempt(db=db, job=later, user=user)
    rnd.state, rnd.finished_at, rnd.error = RoundState.running, None, None
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:
        raise JobError("Another round is running; wait for it or cancel it first.", 409) from None
    return first


on_round_change(settle)  # the engine settles a round through this when a job ends
