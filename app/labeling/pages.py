"""The labeling pages: the labelers' workbench (/label: start, next, a task, my work,
guidelines), and researchers' pages about labels (a task's labels side by side, the tasks
behind a pair of labelers' agreement, review of demonstrations and written prompts, prompt
flags). routes.py is the JSON API and includes these."""

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import STAFF, Admin, AnyUser, Staff
from app.db import DbSession
from app.errors import errors
from app.fields import Id, Text
from app.labeling import research, workbench
from app.labeling.models import PROMPT_FLAG_REASONS
from app.labeling.service import SubmissionError
from app.labeling.workbench import FLAG_LABELS
from app.queue import service as queue
from app.queue.models import TaskKind
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


KindChoice = Literal["any", "demonstrate", "rank", "rate", "write_prompt", "compare"]


@router.get("/label", response_class=HTMLResponse)
def start_page(request: Request, db: DbSession, user: AnyUser) -> Response:
    return render(request, "labeling/start.html",
                  **workbench.start(db=db, user=user, session=request.session), nothing=None,
                  undo=None)


@router.get("/label/next", response_class=HTMLResponse, responses=errors(303))
def next_page(request: Request, db: DbSession, user: AnyUser, kind: KindChoice = "any",
              skipped: Annotated[Id | None, Query()] = None) -> Response:
    assignment = workbench.lease_next(db=db, user=user, kind=kind)
    if assignment is None:
        return render(request, "labeling/start.html",
                      **workbench.start(db=db, user=user, session=request.session),
                      nothing=kind, undo=skipped)
    undo = f"&skipped={skipped}" if skipped else ""
    return RedirectResponse(f"/label/a/{assignment.id}?kind={kind}{undo}", status_code=303)


@router.get("/label/a/{assignment_id}", response_class=HTMLResponse)
def task_page(request: Request, db: DbSession, user: AnyUser, assignment_id: Id,
              kind: KindChoice = "any",
              skipped: Annotated[Id | None, Query()] = None) -> Response:
    screen = workbench.task_screen(db=db, user=user, assignment_id=assignment_id)
    # The compare screen belongs to app/evaluation (its own template and script).
    folder = "evaluation" if screen.task.kind == TaskKind.compare else "labeling"
    left = workbench.left_for(db=db, user=user, kind=screen.task.kind) if screen.live else None
    page = render(
        request, f"{folder}/{screen.task.kind.value}.html", s=screen, pick=kind,
        done=workbench.done(db=db, user=user, session=request.session),
        flags=workbench.FLAG_LABELS,
        limits=workbench.LIMITS, left=left, left_cap=workbench.LEFT_CAP,
        undo=skipped if skipped != assignment_id else None,
    )
    # Back after a submit must fetch the page again (now read-only), not show the live form
    # from the cache.
    page.headers["Cache-Control"] = workbench.NO_STORE
    return page


@router.post("/label/a/{assignment_id}/unskip")
def unskip(request: Request, db: DbSession, user: AnyUser, assignment_id: Id) -> Response:
    """Undo a skip from the page that followed it: back to that task."""
    try:
        queue.unskip(db=db, user=user, assignment_id=assignment_id)
    except queue.QueueError as exc:
        flash(request, str(exc), "error")
        return RedirectResponse("/label", status_code=303)
    return RedirectResponse(f"/label/a/{assignment_id}", status_code=303)


@router.get("/label/mine", response_class=HTMLResponse)
def my_work_page(request: Request, db: DbSession, user: AnyUser) -> Response:
    return render(request, "labeling/mine.html", work=workbench.my_work(db=db, user=user))


@router.get("/label/guidelines", response_class=HTMLResponse)
def guidelines_page(request: Request, db: DbSession, _: Admin) -> Response:
    return render(request, "labeling/guidelines.html",
                  guidelines=workbench.all_guidelines(db=db))


@router.post("/label/guidelines", status_code=303, response_class=RedirectResponse,
             responses=errors(404))
def guidelines_save(
    request: Request, db: DbSession, admin: Admin,
    kind: Annotated[Text, Form(max_length=20)],
    body: Annotated[Text, Form(max_length=50_000)] = "",  # set_guideline's limit, published
) -> Response:
    workbench.set_guideline(db=db, user=admin, kind=kind, body=body)
    flash(request, f"Guidelines for {kind.replace('_', ' ')} saved.", "success")
    return RedirectResponse(f"/label/guidelines#{kind}", status_code=303)
