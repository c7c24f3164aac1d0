"""HTML pages of this domain (researchers and admins): rounds and jobs, the trigger form,
a job's live page, and the schedule editor.

The forms call the same services as the JSON API and send the first job after the commit
(a background task runs after the response, and the response after the commit). A refused
form shows its sentence on the page again with what was typed, and changes nothing.
"""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.auth.deps import Staff
from app.db import DbSession
from app.fields import Id
from app.jobs import service as jobs
from app.jobs.errors import JobError
from app.jobs.kinds import all_kinds
from app.jobs.logtext import device, readable
from app.jobs.models import ENDED_STATES
from app.rounds import feedback, judged, schedule, views
from app.rounds import service as rounds
from app.rounds.stage_config import STAGES
from app.templating import flash, render

router = APIRouter()
MAX_FORM_FIELDS = 200


async def _form(request: Request) -> dict[str, Any]:
    """The posted form as {name: text}, with the stage checkboxes as a list."""
    data = await request.form()  # already parsed (and cached) by the CSRF check
    if len(data) > MAX_FORM_FIELDS:
        raise JobError("The form has too many fields.", 413)
    out: dict[str, Any] = {k: v for k, v in data.items() if isinstance(v, str)}
    out["stages"] = [s for s in data.getlist("stages") if isinstance(s, str)]
    return out


Form = Annotated[dict[str, Any], Depends(_form)]


T = TypeVar("T")


def _act(request: Request, db: Session, refused: str, action: Callable[[], T], *,
         sends_jobs: bool = False) -> T | None:
    """A form's action in a savepoint, the broker checked first where it sends jobs: what
    it returns, or None once the refusal is flashed ("Not cancelled: why")."""
    try:
        with db.begin_nested():
            if sends_jobs:
                jobs.require_broker()
            return action()
    except JobError as exc:
        flash(request, f"{refused}: {exc}", "error")
        return None


def _to_round(round_id: int) -> RedirectResponse:
    return RedirectResponse(f"/jobs#round-{round_id}", status_code=303)


def _back(target: str, fallback: str = "/jobs") -> RedirectResponse:
    # Only back to a page of this domain: never an open redirect.
    safe = target if target.startswith("/jobs") and "//" not in target else fallback
    return RedirectResponse(safe, status_code=303)


def _jobs_page(request: Request, db: DbSession, *, status: int = 200,
               round_form: dict[str, Any] | None = None,
               schedule_form: dict[str, Any] | None = None) -> Response:
    views_of_rounds = views.round_views(db=db)
    lone = views.lone_jobs(db=db)
    listed = [j for v in views_of_rounds for j in v.jobs] + lone
    retried = {j.retry_of_id for j in listed if j.retry_of_id}
    sched = views.schedule_view(db=db)
    live = rounds.live_round(db=db)
    return render(
        request, "jobs/index.html", status_code=status, rounds=views_of_rounds, lone=lone,
        retried=retried, live_round=live, knobs=views.knobs(), stages=STAGES, kinds=all_kinds(),
        form=round_form if round_form is not None else {"stages": list(STAGES)},
        sched=sched, sched_form=(schedule_form if schedule_form is not None
                                 else views.schedule_form(sched["row"])),
        broker_ok=jobs.broker_available(), ended=[str(s) for s in ENDED_STATES],
        readiness=feedback.readiness(db=db), same_data=feedback.last_snapshot(db=db),
    )


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, db: DbSession, _: Staff) -> Response:
    """Rounds and their jobs, the trigger form and the schedule editor."""
    return _jobs_page(request, db)


@router.post("/jobs/rounds")
def trigger_round(request: Request, db: DbSession, user: Staff, form: Form,
                  background: BackgroundTasks) -> Response:
    """Start a round from the trigger form."""
    try:
        with db.begin_nested():
            jobs.require_broker()
            args = views.parse_round_form(form)
            rnd = rounds.create_round(db=db, user=user, **args)
    except JobError as exc:
        flash(request, f"No round started: {exc}", "error")
        page = _jobs_page(request, db, status=exc.status, round_form=form)
        page.headers.update(exc.headers)  # Retry-After when the broker is down
        return page
    first = rounds.current_jobs(db=db, round_id=rnd.id)[0]
    background.add_task(jobs.dispatch, [first.id])
    flash(request, f"Round {rnd.id} queued: {', '.join(rnd.stages)}"
                   f"{' → evaluate' if rnd.evaluate is not None else ''}"
                   f"{' → promote' if rnd.promote else ''}"
                   f"{' → promote if people prefer it' if rnd.promote_if_better else ''}"
                   f"{' → generate' if rnd.generate else ''}.", "success")
    return _to_round(rnd.id)


@router.post("/jobs/rounds/{round_id}/cancel")
def cancel_round(request: Request, db: DbSession, _: Staff, round_id: Id) -> Response:
    """Cancel a round's live jobs."""
    cancelled = _act(request, db, "Not cancelled",
                     lambda: rounds.cancel_round(db=db, round_id=round_id))
    if cancelled is not None:
        flash(request, f"Round {round_id}: cancel requested; a running stage stops at its "
                       "next step.", "success")
    return _to_round(round_id)


@router.post("/jobs/rounds/{round_id}/promote")
def promote_round(request: Request, db: DbSession, user: Staff, round_id: Id,
                  background: BackgroundTasks) -> Response:
    """Promote a round waiting for judgment by hand."""
    ready = _act(request, db, "Not promoted",
                 lambda: judged.promote_by_hand(db=db, round_id=round_id, user=user),
                 sends_jobs=True)
    if ready is not None:
        background.add_task(jobs.dispatch, ready)
        flash(request, f"Round {round_id}: promoting its models.", "success")
    return _to_round(round_id)


@router.post("/jobs/rounds/{round_id}/dismiss")
def dismiss_round(request: Request, db: DbSession, user: Staff, round_id: Id,
                  background: BackgroundTasks) -> Response:
    """End a round waiting for judgment without promoting it."""
    ready = _act(request, db, "Not dismissed",
                 lambda: judged.dismiss(db=db, round_id=round_id, user=user),
                 sends_jobs=True)
    if ready is not None:
        background.add_task(jobs.dispatch, ready)
        fresh = ": its generate stage samples fresh candidates, its policy among them" \
            if ready else ""
        flash(request, f"Round {round_id} dismissed: the active policy stays{fresh}.",
              "success")
    return _to_round(round_id)


@router.post("/jobs/schedule")
def save_schedule(request: Request, db: DbSession, user: Staff, form: Form) -> Response:
    """Save the schedule editor."""
    try:
        with db.begin_nested():
            row = schedule.get_schedule(db=db)
            schedule.update_schedule(db=db, user=user,
                                     **views.parse_schedule_form(form, row))
    except JobError as exc:
        flash(request, f"Schedule not saved: {exc}", "error")
        return _jobs_page(request, db, status=exc.status, schedule_form=form)
    flash(request, "Schedule saved.", "success")
    return RedirectResponse("/jobs#schedule", status_code=303)


@router.get("/jobs/{job_id:int}", response_class=HTMLResponse)  # not /jobs/rounds
def job_page(request: Request, db: DbSession, _: Staff, job_id: Id) -> Response:
    """One job: live state, progress, charts, log tail, config, inputs and outputs."""
    job = jobs.get_job(db=db, job_id=job_id)
    retry = views.was_retried(db=db, job_id=job.id)
    rnd = rounds.get_round(db=db, round_id=job.round_id) if job.round_id else None
    siblings = rounds.current_jobs(db=db, round_id=rnd.id) if rnd else []
    version = views.version_of(db=db, job_id=job.id)
    return render(request, "jobs/job.html", job=job, round=rnd, siblings=siblings,
                  retry=retry, version=version, can_cancel=views.can_cancel(job),
                  can_retry=views.can_retry(job, retry is not None),
                  label=all_kinds()[job.kind].label if job.kind in all_kinds() else job.kind,
                  live=job.state not in ENDED_STATES, log=readable(job.log_tail or ""),
                  device=device(job.log_tail or ""))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, db: DbSession, _: Staff, job_id: Id,
               form: Form) -> Response:
    """Cancel: a queued job at once, a running one at its next step."""
    job = _act(request, db, "Not cancelled", lambda: rounds.cancel_job(db=db, job_id=job_id))
    if job is not None:
        flash(request, f"Job {job_id} ({job.kind}): {job.state}.", "success")
    return _back(str(form.get("next", "")), f"/jobs/{job_id}")


@router.post("/jobs/{job_id}/retry")
def retry_job(request: Request, db: DbSession, user: Staff, job_id: Id,
              background: BackgroundTasks) -> Response:
    """A new attempt of a failed or cancelled job (and of the round stages it stopped)."""
    job = _act(request, db, "Not retried",
               lambda: rounds.retry_job(db=db, job_id=job_id, user=user), sends_jobs=True)
    if job is None:
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)
    background.add_task(jobs.dispatch, [job.id])
    flash(request, f"Job {job_id} retried as job {job.id} (attempt {job.attempt}).", "success")
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)
