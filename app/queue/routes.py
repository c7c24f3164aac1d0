"""The queue API (next task, heartbeat, skip, bulk creation, candidate import); the tasks page
is in pages.py."""

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError

from app.auth.deps import STAFF, AnyUser, Staff
from app.db import DbSession, commit_here
from app.errors import describe, errors, upload_body, validation_errors
from app.fields import Id
from app.prompts import uploads
from app.prompts.schemas import CandidateImportJson, CandidateReportOut
from app.prompts.service import PromptError
from app.queue import candidates, pages
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
from app.templating import add_nav

router = APIRouter()
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


router.include_router(pages.router)
