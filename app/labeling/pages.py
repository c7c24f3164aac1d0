"""Researchers' pages about labels: a task's labels side by side, the tasks behind a
pair of labelers' agreement, review of demonstrations and written prompts, prompt flags."""

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import STAFF, Staff
from app.db import DbSession
from app.errors import errors
from app.fields import Id, Text
from app.labeling import research
from app.labeling.models import PROMPT_FLAG_REASONS
from app.labeling.service import SubmissionError
from app.labeling.workbench import FLAG_LABELS
from app.templating import add_nav, flash, render

router = APIRouter()
add_nav("Review", "/review", STAFF,
        "Accept or reject demonstrations and labeler-written prompts; prompt flags.")

What = Literal["demonstration", "prompt"]
State = Literal["pending", "accepted", "rejected", "all"]


def _error(request: Request, exc: SubmissionError) -> Response:
    return render(request, "error.html", status_code=exc.status,
                  title="Not found" if exc.status == 404 else "Cannot do that", detail=str(exc))


@router.get("/tasks/{task_id:int}", response_class=HTMLResponse)  # not /tasks/create
def task_view_page(request: Request, db: DbSession, _: Staff, task_id: Id) -> Response:
    try:
        view = research.task_view(db=db, task_id=task_id)
    except SubmissionError as exc:
        return _error(request, exc)
    return render(request, "queue/task.html", v=view, flag_labels=FLAG_LABELS)


@router.get("/agreement/tasks", response_class=HTMLResponse, responses=errors(404))
def shared_tasks_page(request: Request, db: DbSession, _: Staff, labeler: Id,
                      other: Id | None = None) -> Response:
    try:
        found = research.shared_tasks(db=db, labeler=labeler, other=other)
    except SubmissionError as exc:
        return _error(request, exc)
    return render(request, "agreement/tasks.html", **found)


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, db: DbSession, _: Staff, what: What = "demonstration",
                state: State = "pending") -> Response:
    return render(request, "labeling/review.html", what=what, state=state,
                  rows=research.review_queue(db=db, what=what, state=state),
                  counts=research.review_counts(db=db), flag_counts=research.flag_counts(db=db),
                  page_size=research.REVIEW_PAGE)


@router.post("/review/{what}/{row_id}")
def review_save(
    request: Request, db: DbSession, user: Staff, what: What, row_id: Id,
    decision: Annotated[Literal["accepted", "rejected"], Form()],
    reason: Annotated[Text, Form(max_length=5000)] = "",
    state: Annotated[State, Form()] = "pending",
) -> Response:
    back = f"/review?what={what}&state={state}"
    try:
        research.set_review(db=db, user=user, what=what, row_id=row_id, decision=decision,
                            reason=reason)
    except SubmissionError as exc:
        if exc.status == 404:
            return _error(request, exc)
        flash(request, f"{what.capitalize()} {row_id}: {exc}", "error")
        return RedirectResponse(f"{back}#r{row_id}", status_code=303)
    flash(request, f"{what.capitalize()} {row_id} {decision}.", "success")
    return RedirectResponse(back, status_code=303)


@router.get("/review/flags", response_class=HTMLResponse)
def flags_page(request: Request, db: DbSession, _: Staff,
               reason: Literal["pii", "harmful", "unclear", ""] = "") -> Response:
    return render(request, "labeling/flags.html", reason=reason, reasons=PROMPT_FLAG_REASONS,
                  flags=research.prompt_flags(db=db, reason=reason or None),
                  counts=research.flag_counts(db=db))


@router.get("/tasks/{task_id}/gold", response_class=HTMLResponse)
def gold_page(request: Request, db: DbSession, _: Staff, task_id: Id) -> Response:
    try:
        task, candidates, values = research.gold_form(db=db, task_id=task_id)
    except SubmissionError as exc:
        return _error(request, exc)
    return render(request, "queue/gold.html", task=task, candidates=candidates, values=values,
                  error=None)


@router.post("/tasks/{task_id}/gold")
async def gold_save(request: Request, db: DbSession, _: Staff, task_id: Id) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str) and len(v) <= 20}
    try:
        research.set_gold(db=db, task_id=task_id, values=values)
    except SubmissionError as exc:
        if exc.status == 404:
            return _error(request, exc)
        task, candidates, _kept = research.gold_form(db=db, task_id=task_id)
        return render(request, "queue/gold.html", status_code=422, task=task,
                      candidates=candidates, values=values, error=str(exc))
    flash(request, f"Gold answer of task {task_id} saved." if values.get("gold")
          else f"Task {task_id} is no longer a gold task.", "success")
    return RedirectResponse(f"/tasks/{task_id}", status_code=303)
