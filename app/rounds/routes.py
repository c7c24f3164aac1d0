"""Rounds, jobs, metrics and the schedule: the pages and the JSON API (researchers, admins)."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query

from app.auth.deps import STAFF, Staff
from app.db import DbSession
from app.errors import errors
from app.fields import Id, Text
from app.jobs import service as jobs
from app.jobs.logtext import readable
from app.jobs.models import JobState
from app.rounds import feedback, judged, pages, schedule
from app.rounds import service as rounds
from app.rounds.models import Round
from app.rounds.schemas import (
    JobBrief,
    JobLog,
    JobRead,
    MetricsRead,
    RoundCreate,
    RoundCreated,
    RoundRead,
    ScheduleRead,
    ScheduleWrite,
)
from app.templating import add_nav

router = APIRouter()
add_nav("Jobs", "/jobs", STAFF, "Training rounds and jobs: trigger, watch, cancel, retry.")

JobId = Annotated[int, Query(ge=1, lt=2**31)]
# Jobs are sent by a background task: it runs after the response, so after the commit that
# made them visible to workers.


def _round_read(db: DbSession, rnd: Round) -> RoundRead:
    out = RoundRead.model_validate(rnd)
    out.jobs = [JobRead.model_validate(j) for j in rounds.round_jobs(db=db, round_id=out.id)]
    out.warnings = feedback.round_warnings(db=db, rnd=rnd,
                                         jobs=rounds.current_jobs(db=db, round_id=out.id))
    return out


@router.post("/api/v1/rounds", response_model=RoundCreated, status_code=202,
             responses=errors(409))
def create_round(db: DbSession, user: Staff, body: RoundCreate,
                 background: BackgroundTasks) -> RoundCreated:
    """Start a round: export → the stages → (promote → generate); 202 with its jobs."""
    jobs.require_broker()
    rnd = rounds.create_round(db=db, user=user, stages=body.stages, config=body.config,
                              promote=body.promote,
                              generate=(body.generate.model_dump(exclude_none=True)
                                        if body.generate else None),
                              exclusive=body.exclusive,
                              evaluate=body.evaluate.model_dump() if body.evaluate else None)
    created = rounds.current_jobs(db=db, round_id=rnd.id)
    background.add_task(jobs.dispatch, [created[0].id])
    return RoundCreated(round_id=rnd.id, jobs=[JobBrief.model_validate(j) for j in created],
                        warnings=feedback.round_warnings(db=db, rnd=rnd, jobs=created))


@router.get("/api/v1/rounds", response_model=list[RoundRead])
def list_rounds(db: DbSession, _: Staff) -> list[RoundRead]:
    """Rounds, newest first, each with its jobs."""
    return [_round_read(db, r) for r in rounds.list_rounds(db=db)]


@router.get("/api/v1/rounds/{round_id}", response_model=RoundRead)
def get_round(db: DbSession, _: Staff, round_id: Id) -> RoundRead:
    """One round with every attempt of its jobs."""
    return _round_read(db, rounds.get_round(db=db, round_id=round_id))


@router.post("/api/v1/rounds/{round_id}/cancel", response_model=RoundRead,
             responses=errors(409))
def cancel_round(db: DbSession, _: Staff, round_id: Id) -> RoundRead:
    """Cancel the round's live jobs (running ones stop at their next step)."""
    return _round_read(db, rounds.cancel_round(db=db, round_id=round_id))


@router.post("/api/v1/rounds/{round_id}/promote", response_model=RoundRead, status_code=202,
             responses=errors(404, 409))
def promote_round(db: DbSession, user: Staff, round_id: Id,
                  background: BackgroundTasks) -> RoundRead:
    """Promote a round waiting for judgment by hand (it confirms a flagged one)."""
    jobs.require_broker()
    ready = judged.promote_by_hand(db=db, round_id=round_id, user=user)
    background.add_task(jobs.dispatch, ready)
    return _round_read(db, rounds.get_round(db=db, round_id=round_id))


@router.post("/api/v1/rounds/{round_id}/dismiss", response_model=RoundRead,
             responses=errors(404, 409))
def dismiss_round(db: DbSession, user: Staff, round_id: Id,
                  background: BackgroundTasks) -> RoundRead:
    """End a round waiting for judgment without promoting it; its generate stage, if it
    has one, still samples fresh candidates (its own policy among them)."""
    jobs.require_broker()
    ready = judged.dismiss(db=db, round_id=round_id, user=user)
    background.add_task(jobs.dispatch, ready)
    return _round_read(db, rounds.get_round(db=db, round_id=round_id))


@router.get("/api/v1/jobs", response_model=list[JobRead])
def list_jobs(db: DbSession, _: Staff, round_id: Id | None = None,
              state: JobState | None = None,
              limit: int = Query(200, ge=1, le=1000)) -> list[JobRead]:
    """Jobs, newest first."""
    found = jobs.list_jobs(db=db, round_id=round_id, state=state, limit=limit)
    return [JobRead.model_validate(j) for j in found]


@router.get("/api/v1/jobs/{job_id}", response_model=JobRead)
def get_job(db: DbSession, _: Staff, job_id: Id) -> JobRead:
    """One job: state, progress, config, inputs and outputs."""
    return JobRead.model_validate(jobs.get_job(db=db, job_id=job_id))


@router.get("/api/v1/jobs/{job_id}/log", response_model=JobLog)
def job_log(db: DbSession, _: Staff, job_id: Id) -> JobLog:
    """The last lines the job printed."""
    job = jobs.get_job(db=db, job_id=job_id)
    return JobLog(id=job.id, state=job.state, log_tail=readable(job.log_tail or ""))


@router.get("/api/v1/jobs/{job_id}/metrics", response_model=MetricsRead)
def job_metrics(db: DbSession, _: Staff, job_id: Id,
                keys: Text | None = Query(None, max_length=2000,
                                         description="comma-separated metric names"),
                max_points: int = Query(1000, ge=2, le=10_000)) -> MetricsRead:
    """Each metric's [[step, value], …], downsampled on the server to max_points."""
    wanted = [k.strip() for k in keys.split(",") if k.strip()] if keys else None
    return MetricsRead(series=jobs.metric_series(db=db, job_id=job_id, keys=wanted,
                                                 max_points=max_points))


@router.post("/api/v1/jobs/{job_id}/cancel", response_model=JobRead, responses=errors(409))
def cancel_job(db: DbSession, _: Staff, job_id: Id) -> JobRead:
    """Cancel: a queued job at once, a running one at its next step (state cancelling)."""
    return JobRead.model_validate(rounds.cancel_job(db=db, job_id=job_id))


@router.post("/api/v1/jobs/{job_id}/retry", response_model=JobRead, status_code=202,
             responses=errors(409))
def retry_job(db: DbSession, user: Staff, job_id: Id,
              background: BackgroundTasks) -> JobRead:
    """A new attempt of a failed or cancelled job (and of the round stages it stopped)."""
    jobs.require_broker()
    job = rounds.retry_job(db=db, job_id=job_id, user=user)
    background.add_task(jobs.dispatch, [job.id])
    return JobRead.model_validate(job)


@router.get("/api/v1/schedule", response_model=ScheduleRead)
def get_schedule(db: DbSession, _: Staff) -> ScheduleRead:
    """When rounds start by themselves, and the feedback gathered since the last one."""
    out = ScheduleRead.model_validate(schedule.get_schedule(db=db))
    out.new_feedback = schedule.new_feedback(db=db)
    return out


@router.put("/api/v1/schedule", response_model=ScheduleRead)
def put_schedule(db: DbSession, user: Staff, body: ScheduleWrite) -> ScheduleRead:
    """Set the schedule (422 for one that makes no sense)."""
    row = schedule.update_schedule(db=db, user=user, **body.model_dump())
    out = ScheduleRead.model_validate(row)
    out.new_feedback = schedule.new_feedback(db=db)
    return out


router.include_router(pages.router)
