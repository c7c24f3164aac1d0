"""The queue API (next task, heartbeat, skip, bulk creation) and the researchers' tasks page."""

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.auth.deps import STAFF, AnyUser, Staff
from app.db import DbSession, commit_here, session_scope
from app.errors import describe, errors, redisplays, upload_body, validation_errors
from app.fields import Id, Text
from app.prompts import uploads
from app.prompts.models import PromptKind
from app.prompts.schemas import CandidateImportJson, CandidateReportOut
from app.prompts.service import PromptError
from app.queue import candidates, from_lines
from app.queue import service as queue
from app.queue import views as queue_views
from app.queue.models import TaskKind
from app.queue.schemas import (
    Activity,
    BulkCreate,
    BulkCreated,
    LeaseOut,
    SkipIn,
    SkipOut,
    TaskOut,
    TaskStat,
)
from app.templating import add_nav, flash, render

router = APIRouter()
MAX_CANDIDATE_FILE = 50 * 2**20
add_nav("Tasks", "/tasks", STAFF, "Task counts by kind and state; create labeling work.")



@router.get("/api/v1/tasks/next", response_model=TaskOut,
            responses={204: {"description": "Nothing to do right now."}})
def next_task(db: DbSession, user: AnyUser, kind: TaskKind | None = None) -> object:
    """Lease the next task (or return the one already leased); 204 when there is none."""
    lease = queue.next_task(db=db, user=user, kind=kind)
    payload = None if lease is None else queue.task_payload(db=db, assignment=lease)
    commit_here(db)
    return Response(status_code=204) if payload is None else payload


@router.get("/api/v1/assignments/{assignment_id}", response_model=TaskOut)
def get_assignment(db: DbSession, user: AnyUser, assignment_id: Id) -> object:
    """One of your assignments again (e.g. after a reload)."""
    assignment = queue.get_assignment(db=db, user=user, assignment_id=assignment_id)
    return queue.task_payload(db=db, assignment=assignment)


@router.post("/api/v1/assignments/{assignment_id}/heartbeat", response_model=LeaseOut,
             responses=errors(409))
def heartbeat(db: DbSession, user: AnyUser, assignment_id: Id) -> object:
    """Keep a lease alive while its page is open."""
    assignment = queue.heartbeat(db=db, user=user, assignment_id=assignment_id)
    return LeaseOut(assignment_id=assignment.id, expires_at=assignment.expires_at)


@router.post("/api/v1/assignments/{assignment_id}/skip", response_model=SkipOut,
             responses=errors(400, 409))
def skip(db: DbSession, user: AnyUser, assignment_id: Id,
         body: Annotated[SkipIn | None, Body()] = None) -> object:
    """Give a task back; it is not offered to you again."""
    queue.skip(db=db, user=user, assignment_id=assignment_id,
               reason=body.reason if body else None)
    return SkipOut(assignment_id=assignment_id)


# A script's bulk request (tens of thousands of rank items) is larger than a form.
@router.post("/api/v1/tasks/bulk", response_model=BulkCreated, status_code=201,
             responses=errors(400, 404), max_body_size=32 * 2**20)
def create_bulk(db: DbSession, _: Staff, spec: BulkCreate) -> object:
    """Create tasks in bulk (see BulkCreate for each kind's fields)."""
    created, ids = queue.create_bulk(db=db, spec=spec)
    return BulkCreated(created=created, task_ids=ids)


@router.get("/api/v1/tasks/stats", response_model=list[TaskStat])
def stats(db: DbSession, _: Staff) -> object:
    """Task counts and label progress by kind and state."""
    return queue.task_stats(db=db)


@router.get("/api/v1/tasks/activity", response_model=Activity)
def activity(db: DbSession, _: Staff) -> object:
    """Submissions per minute, active labelers and live leases, over the last minutes."""
    return queue_views.activity(db=db)


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
    from fastapi.concurrency import run_in_threadpool
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


@router.post("/api/v1/candidates/import", response_model=CandidateReportOut,
             responses={**errors(400, 413), **uploads.IMPORT_QUEUED},
             openapi_extra=upload_body(CandidateImportJson, "rows"),
             max_body_size=uploads.max_body_bytes())
async def import_candidates_api(request: Request, db: DbSession, user: Staff,
                                background: BackgroundTasks) -> Any:
    """Import candidates: a multipart JSONL `file` or a JSON list of rows (public contract).
    A file or body over RLHF_IMPORT_INLINE_MAX_MB is imported by a job: 202 with its id."""
    if uploads.is_multipart(request):
        data, _size, _name, fields = await uploads.read_upload(request)
        try:
            spec = CandidateImportJson(
                rows=[], rules=uploads.form_rules(fields),
                rank_tasks=fields.get("rank_tasks", "").lower() in ("1", "true", "on", "yes"),
                overlap=int(fields.get("overlap") or 1), priority=int(fields.get("priority") or 0))
        except ValidationError as exc:
            raise PromptError(
                f"Invalid options: {describe(validation_errors(exc.errors()))}", 422) from exc
        except ValueError as exc:
            raise PromptError("Invalid options: `overlap` and `priority` are whole "
                                      "numbers.", 422) from exc
        options = spec.model_dump(exclude={"rows", "rules"})
        if not isinstance(data, bytes):  # kept on disk for a job
            return uploads.accepted(uploads.queue_upload(
                db, background, "candidates", data, _name, spec.rules, options, user))
        report = await run_in_threadpool(
            candidates.import_candidates_file, db=db, data=data, rules=spec.rules, **options)
    else:
        size = await uploads.json_size(request)
        body = await uploads.json_body(request, CandidateImportJson, "rows")
        options = body.model_dump(exclude={"rows", "rules"})
        if uploads.runs_as_job(size):
            return uploads.accepted(uploads.queue_upload(
                db, background, "candidates", body.rows, "body.json", body.rules, options, user))
        report = await run_in_threadpool(
            candidates.import_candidates, db=db, objects=enumerate(body.rows, start=1),
            rules=body.rules, **options)
    return report
