"""Prompt import and use cases: the JSON API (the pages are in pages.py)."""

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool

from app.auth.deps import STAFF, Admin, AnyUser, Staff
from app.auth.models import Role
from app.db import DbSession
from app.errors import errors, upload_body
from app.fields import Id, Offset, PageSize, Text
from app.prompts import pages, uploads
from app.prompts import service as prompts
from app.prompts.models import PromptSource, Split
from app.prompts.schemas import (
    ImportReportOut,
    PromptCounts,
    PromptImportJson,
    PromptPage,
    UseCaseCreate,
    UseCaseRead,
    UseCaseUpdate,
)
from app.templating import add_nav

router = APIRouter()
add_nav("Prompts", "/prompts", STAFF, "Import prompts under the paper's data rules; browse them.")
add_nav("Use cases", "/admin/use-cases", (Role.admin,), "The use cases labelers write prompts for.")


@router.post("/api/v1/prompts/import", response_model=ImportReportOut,
             responses={**errors(400, 413), **uploads.IMPORT_QUEUED},
             openapi_extra=upload_body(PromptImportJson, "prompts"),
             max_body_size=uploads.max_body_bytes())
async def import_api(request: Request, db: DbSession, user: Staff,
                     background: BackgroundTasks) -> Any:
    """Import prompts: a multipart `file` (JSONL or CSV) or a JSON list of prompt objects.
    A file or body over RLHF_IMPORT_INLINE_MAX_MB is imported by a job: 202 with its id."""
    if uploads.is_multipart(request):
        data, _size, name, fields = await uploads.read_upload(request)
        strict = fields.get("strict", "").lower() in ("1", "true", "on", "yes")
        rules = uploads.form_rules(fields)
        if not isinstance(data, bytes):  # kept on disk for a job
            return uploads.accepted(uploads.queue_upload(
                db, background, "prompts", data, name, rules, {"strict": strict}, user))
        report = await run_in_threadpool(
            prompts.import_file, db=db, data=data, filename=name, rules=rules, user=user,
            strict=strict)
    else:
        size = await uploads.json_size(request)
        body = await uploads.json_body(request, PromptImportJson, "prompts")
        if uploads.runs_as_job(size):
            return uploads.accepted(uploads.queue_upload(
                db, background, "prompts", body.prompts, "body.json", body.rules,
                {"strict": body.strict}, user))
        report = await run_in_threadpool(
            prompts.import_objects, db=db, objects=body.prompts, rules=body.rules,
            user=user, strict=body.strict)
    return report.summary()


@router.get("/api/v1/prompts", response_model=PromptPage)
def list_api(
    db: DbSession, _: Staff, split: Split | None = None, category: Text | None = None,
    source: PromptSource | None = None, end_user_id: Text | None = None, q: Text | None = None,
    limit: PageSize = prompts.PAGE_SIZE, offset: Offset = 0,
) -> Any:
    """A page of prompts, newest first, with the total that match the filters."""
    items, total = prompts.list_prompts(db=db, split=split, category=category, source=source,
                                        end_user_id=end_user_id, q=q, limit=limit,
                                        offset=offset)
    return {"total": total, "items": items}


@router.get("/api/v1/prompts/counts", response_model=PromptCounts)
def counts_api(db: DbSession, _: Staff) -> Any:
    """Prompt counts per split, category and source."""
    return prompts.prompt_counts(db=db)


@router.get("/api/v1/use-cases", response_model=list[UseCaseRead])
def use_cases_api(db: DbSession, user: AnyUser) -> Any:
    """The use cases (labelers see the active ones)."""
    return prompts.list_use_cases(db=db, active_only=user.role == Role.labeler)


@router.post("/api/v1/use-cases", response_model=UseCaseRead, status_code=201,
             responses=errors(409))
def create_use_case_api(db: DbSession, _: Admin, body: UseCaseCreate) -> Any:
    """Add a use case."""
    return prompts.create_use_case(db=db, name=body.name, description=body.description)


@router.patch("/api/v1/use-cases/{use_case_id}", response_model=UseCaseRead,
              responses=errors(409))
def update_use_case_api(db: DbSession, _: Admin, use_case_id: Id, body: UseCaseUpdate) -> Any:
    """Rename, redescribe, retire or restore a use case."""
    return prompts.update_use_case(db=db, use_case_id=use_case_id,
                                   **body.model_dump(exclude_unset=True))


router.include_router(pages.router)
