"""The queue pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.auth.deps import Staff
from app.db import DbSession, session_scope
from app.errors import errors, redisplays, upload_body
from app.fields import Text
from app.prompts.models import PromptKind
from app.queue import from_lines
from app.queue import service as queue
from app.queue import views as queue_views
from app.queue.models import TaskKind
from app.queue.schemas import (
    BulkCreate,
)
from app.templating import flash, render

router = APIRouter()


MAX_CANDIDATE_FILE = 50 * 2**20


def _tasks_page(request: Request, db: DbSession, status_code: int = 200,
                **extra: object) -> Response:
    context: dict[str, object] = {"form": {}, "report": None, "candidate_report": None,
                                  "error": None}
    context.update(extra)
    return render(request, "queue/tasks.html", status_code=status_code,
                  stats=queue.task_stats(db=db), prompt_kinds=list(PromptKind),
                  recent=queue_views.recent_tasks(db=db),
                  activity=queue_views.activity(db=db), **context)


@router.get("/tasks", response_class=HTMLResponse)
def tasks_page(request: Request, db: DbSession, _: Staff) -> Response:
    return _tasks_page(request, db)


# The ids field may hold 200,000 characters, up to 12 bytes each once form-encoded.
@router.post("/tasks/create", response_class=HTMLResponse, max_body_size=4 * 2**20)
def tasks_create_from_lines(
    request: Request, db: DbSession, _: Staff,
    kind: Annotated[Text, Form(max_length=20)] = "",
    ids: Annotated[Text, Form(max_length=200_000)] = "",
    overlap: Annotated[Text, Form(max_length=10)] = "1",
    priority: Annotated[Text, Form(max_length=10)] = "0",
) -> Response:
    """Demonstrate, rank or rate tasks for the ids listed, with a report per line."""
    form = {"kind": kind, "ids": ids, "overlap": overlap, "priority": priority}
    try:
        n_overlap = _whole(overlap, "Overlap", 1, 50)
        n_priority = _whole(priority, "Priority", -1000, 1000)
        report = from_lines.create_from_lines(db=db, kind=kind, text=ids, overlap=n_overlap,
                                              priority=n_priority)
    except queue.QueueError as exc:
        return _tasks_page(request, db, 422, form=form, error=str(exc))
    return _tasks_page(request, db, form=form, report=report, report_kind=kind)


@router.post("/tasks/import-candidates", response_class=HTMLResponse,
             responses=errors(400, 413), openapi_extra=upload_body(),
             max_body_size=MAX_CANDIDATE_FILE + 2**20)
async def tasks_import_candidates(request: Request, db: DbSession, _: Staff) -> Response:
    """Import model outputs (candidates JSONL) and, if asked, a rank task per row."""
    from starlette.datastructures import UploadFile

    from app.queue import candidates as candidate_import

    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    upload = form.get("file")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise queue.QueueError("Choose a candidates file (JSONL) to import.")
        data = await upload.read(MAX_CANDIDATE_FILE + 1)
        if len(data) > MAX_CANDIDATE_FILE:
            raise queue.QueueError(f"The file is larger than {MAX_CANDIDATE_FILE // 2**20} MB.")
        options = {"rank_tasks": fields.get("rank_tasks") == "on",
                   "overlap": _whole(fields.get("overlap", "1"), "Overlap", 1, 50),
                   "priority": _whole(fields.get("priority", "0"), "Priority", -1000, 1000)}
    except queue.QueueError as exc:
        return _tasks_page(request, db, 422, form=fields, error=str(exc))
    report = await run_in_threadpool(candidate_import.import_candidates_file, db=db, data=data,
                                     **options)
    return _tasks_page(request, db, form=fields, candidate_report=report)


def _whole(raw: str, name: str, low: int, high: int) -> int:
    text = (raw or "").strip()
    if not text.lstrip("-").isdigit() or not low <= int(text) <= high:
        raise queue.QueueError(f"{name} must be a whole number from {low} to {high}, not "
                               f"{text!r}.")
    return int(text)


def _tasks(request: Request, db: Session, form: dict[str, str]) -> Response:
    return _tasks_page(request, db, form=form, posted=request.url.path)


def _tasks_again(request: Request, form: dict[str, str], message: str) -> Response:
    flash(request, message, "error")
    with session_scope(read_only=True) as db:  # a page shown again only reads
        return _tasks(request, db, form)


@router.post("/tasks/demonstrate", status_code=303, response_class=RedirectResponse,
             responses=errors(400, 404))
@redisplays(_tasks_again)
def tasks_create_demonstrate(
    request: Request, db: DbSession, _: Staff,
    overlap: Annotated[int, Form(ge=1, le=50)] = 1,
    priority: Annotated[int, Form(ge=-1000, le=1000)] = 0,
) -> Response:
    n, _ids = queue.create_bulk(db=db, spec=BulkCreate(
        kind=TaskKind.demonstrate, overlap=overlap, priority=priority))
    flash(request, f"Created {n} demonstrate tasks.", "success")
    return RedirectResponse("/tasks", status_code=303)


@router.post("/tasks/write-prompt", status_code=303, response_class=RedirectResponse,
             responses=errors(400, 404))
@redisplays(_tasks_again)
def tasks_create_write_prompt(
    request: Request, db: DbSession, _: Staff,
    prompt_kind: Annotated[PromptKind, Form()] = PromptKind.plain,
    count: Annotated[int, Form(ge=1, le=10_000)] = 1,
    overlap: Annotated[int, Form(ge=1, le=50)] = 1,
    priority: Annotated[int, Form(ge=-1000, le=1000)] = 0,
) -> Response:
    n, _ids = queue.create_bulk(db=db, spec=BulkCreate(
        kind=TaskKind.write_prompt, prompt_kind=prompt_kind, count=count, overlap=overlap,
        priority=priority))
    flash(request, f"Created {n} write-prompt tasks ({prompt_kind.value}).", "success")
    return RedirectResponse("/tasks", status_code=303)
