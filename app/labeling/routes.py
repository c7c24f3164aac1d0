"""The labeling screens under /label and the submit API; the pages use the same service."""

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import ALL_ROLES, Admin, AnyUser
from app.auth.models import Role
from app.db import DbSession, commit_here
from app.errors import errors
from app.fields import Id, Text
from app.labeling import pages, service, workbench
from app.labeling.schemas import (
    DraftRead,
    DraftSave,
    PromptFlagCreate,
    PromptFlagRead,
    SubmissionCreate,
    SubmissionRead,
)
from app.queue import service as queue
from app.queue.models import TaskKind
from app.templating import add_nav, flash, render

router = APIRouter()
router.include_router(pages.router)
add_nav("Label", "/label", ALL_ROLES, "Write demonstrations, rank and rate model outputs.")
add_nav("My work", "/label/mine", (Role.labeler,), "Your own counts, time and recent work.")
add_nav("Guidelines", "/label/guidelines", (Role.admin,), "Edit what labelers read per task.")

NO_STORE = "no-store"
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
    page.headers["Cache-Control"] = NO_STORE
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


@router.post("/api/v1/tasks/{task_id}/submit", response_model=SubmissionRead,
             responses=errors(400, 409))
def submit(db: DbSession, user: AnyUser, task_id: Id, body: SubmissionCreate) -> SubmissionRead:
    answer = service.submit(db=db, user=user, task_id=task_id, body=body)
    commit_here(db)
    return answer


@router.put("/api/v1/assignments/{assignment_id}/draft", response_model=DraftRead,
            responses=errors(409, 413))
def draft_save(db: DbSession, user: AnyUser, assignment_id: Id, body: DraftSave) -> DraftRead:
    draft = workbench.save_draft(db=db, user=user, assignment_id=assignment_id,
                                 text=body.text, client_ms=body.client_ms, data=body.data)
    # `saved` tells the page whether its text won or a newer save already had.
    return DraftRead(assignment_id=assignment_id, text=draft.text, data=draft.data or {},
                     client_ms=draft.client_ms, saved=draft.client_ms == body.client_ms)


@router.get("/api/v1/assignments/{assignment_id}/draft", response_model=DraftRead)
def draft_get(response: Response, db: DbSession, user: AnyUser, assignment_id: Id) -> DraftRead:
    response.headers["Cache-Control"] = NO_STORE
    draft = workbench.get_draft(db=db, user=user, assignment_id=assignment_id)
    if draft is None:
        return DraftRead(assignment_id=assignment_id, text="", client_ms=0, saved=False)
    return DraftRead(assignment_id=assignment_id, text=draft.text, data=draft.data or {},
                     client_ms=draft.client_ms)


@router.post("/api/v1/assignments/{assignment_id}/flags", response_model=PromptFlagRead,
             responses=errors(409))
def flag_prompt(db: DbSession, user: AnyUser, assignment_id: Id,
                body: PromptFlagCreate) -> object:
    return workbench.flag_prompt(db=db, user=user, assignment_id=assignment_id,
                                 reason=body.reason, comment=body.comment)
