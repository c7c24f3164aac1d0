"""Prompt and candidate import (page and API), the prompt list, and the use-case list."""

import json
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from app.auth.deps import STAFF, Admin, AnyUser, Staff
from app.auth.models import Role
from app.config import get_settings
from app.db import DbSession, session_scope
from app.errors import describe, errors, redisplays, upload_body, validation_errors
from app.fields import Id, Offset, PageNumber, PageSize, Text
from app.jobs import service as jobs
from app.jobs.models import Job
from app.prompts import candidates as candidate_import
from app.prompts import service as prompts
from app.prompts import uploads
from app.prompts.models import CATEGORIES, PromptSource, Split
from app.prompts.rules import ImportRules
from app.prompts.schemas import (
    CandidateImportJson,
    CandidateReportOut,
    ImportQueued,
    ImportReportOut,
    PromptCounts,
    PromptImportJson,
    PromptPage,
    UseCaseCreate,
    UseCaseRead,
    UseCaseUpdate,
)
from app.templating import add_nav, flash, render

router = APIRouter()
add_nav("Prompts", "/prompts", STAFF, "Import prompts under the paper's data rules; browse them.")
add_nav("Use cases", "/admin/use-cases", (Role.admin,), "The use cases labelers write prompts for.")

PAGE = 50
IMPORT_QUEUED: dict[int | str, dict[str, Any]] = {202: {
    "model": ImportQueued,
    "description": "A large upload: imported by a job, whose outputs are the report "
                   "(GET /api/v1/jobs/{job_id})"}}


def _send(job_ids: list[int]) -> None:
    # Runs after the response, so after the commit that made the job visible to workers.
    jobs.dispatch(job_ids)


async def _upload(request: Request) -> tuple[bytes | BinaryIO, int, str, dict[str, Any]]:
    """The uploaded file, its size, its name, and the other form fields. The file is its
    bytes when it is imported in the request; one for a job stays the spooled file on disk
    (the multipart parser writes a file past 1 MB there), copied in chunks by the job."""
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise prompts.PromptError("Attach the file as the multipart field `file`.")
    size = upload.file.seek(0, 2)
    upload.file.seek(0)
    limit = uploads.max_upload_bytes()
    if size > limit:
        raise prompts.PromptError(f"The file is larger than {limit / 2**20:g} MB "
                                  "(RLHF_IMPORT_MAX_UPLOAD_MB).", 413)
    data = upload.file if uploads.runs_as_job(size) else await upload.read()
    fields = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    return data, size, upload.filename or "", fields


def _form_rules(fields: dict[str, Any]) -> ImportRules:
    try:
        if fields.get("rules"):
            return ImportRules.model_validate_json(fields["rules"])
        given = {k: v for k, v in fields.items() if k in ImportRules.model_fields and v != ""}
        if fields.get("form") == "page" and "scrub_pii" not in fields:
            given["scrub_pii"] = False  # an unticked checkbox on the page sends nothing
        return ImportRules.model_validate(given)
    except ValidationError as exc:
        raise prompts.PromptError(f"Invalid rules: {describe(validation_errors(exc.errors()))}",
                                  422) from exc


async def _json_body(request: Request, schema: Any) -> Any:
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise prompts.PromptError("Send a JSON body or a multipart file.") from exc
    except RecursionError as exc:
        raise prompts.PromptError("The JSON body is nested too deeply.") from exc
    if isinstance(payload, list):
        payload = {("prompts" if schema is PromptImportJson else "rows"): payload}
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(  # the same 422 as any other route's body
            [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]}
             for e in exc.errors()]) from exc


async def _json_size(request: Request) -> int:
    """The JSON body's size; over the upload limit it is refused (413) before parsing."""
    size = len(await request.body())
    if size > uploads.max_upload_bytes():
        raise prompts.PromptError(f"The body is larger than "
                                  f"{uploads.max_upload_bytes() / 2**20:g} MB "
                                  "(RLHF_IMPORT_MAX_UPLOAD_MB).", 413)
    return size


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def _queue(db: Session, background: BackgroundTasks, what: uploads.What,
           upload: bytes | BinaryIO | list[Any], name: str, rules: ImportRules,
           options: dict[str, Any], user: Any) -> Job:
    """Keep an upload for an import job, sent once the request has committed. `upload`: a
    file's bytes, or a JSON body's objects (checked already), kept as a JSON list."""
    objects = len(upload) if isinstance(upload, list) else None
    data = json.dumps(upload).encode() if isinstance(upload, list) else upload
    job = uploads.queue_import(db=db, what=what, data=data, filename=name, user=user,
                               objects=objects,
                               options={**options, "rules": rules.model_dump(mode="json")})
    background.add_task(_send, [job.id])
    return job


def _accepted(job: Job) -> JSONResponse:
    body = ImportQueued(job_id=job.id, state=job.state, bytes=job.config["bytes"],
                        status_url=f"/api/v1/jobs/{job.id}")
    return JSONResponse(body.model_dump(), status_code=202)


@router.post("/api/v1/prompts/import", response_model=ImportReportOut,
             responses={**errors(400, 413), **IMPORT_QUEUED},
             openapi_extra=upload_body(PromptImportJson, "prompts"),
             max_body_size=uploads.max_body_bytes())
async def import_api(request: Request, db: DbSession, user: Staff,
                     background: BackgroundTasks) -> Any:
    """Import prompts: a multipart `file` (JSONL or CSV) or a JSON list of prompt objects.
    A file or body over RLHF_IMPORT_INLINE_MAX_MB is imported by a job: 202 with its id."""
    if _is_multipart(request):
        data, _size, name, fields = await _upload(request)
        strict = fields.get("strict", "").lower() in ("1", "true", "on", "yes")
        rules = _form_rules(fields)
        if not isinstance(data, bytes):  # kept on disk for a job
            return _accepted(_queue(db, background, "prompts", data, name, rules,
                                    {"strict": strict}, user))
        report = await run_in_threadpool(
            prompts.import_file, db=db, data=data, filename=name, rules=rules, user=user,
            strict=strict)
    else:
        size = await _json_size(request)
        body = await _json_body(request, PromptImportJson)
        if uploads.runs_as_job(size):
            return _accepted(_queue(db, background, "prompts", body.prompts, "body.json",
                                    body.rules, {"strict": body.strict}, user))
        report = await run_in_threadpool(
            prompts.import_objects, db=db, objects=body.prompts, rules=body.rules,
            user=user, strict=body.strict)
    return report.summary()


@router.post("/api/v1/candidates/import", response_model=CandidateReportOut,
             responses={**errors(400, 413), **IMPORT_QUEUED},
             openapi_extra=upload_body(CandidateImportJson, "rows"),
             max_body_size=uploads.max_body_bytes())
async def import_candidates_api(request: Request, db: DbSession, user: Staff,
                                background: BackgroundTasks) -> Any:
    """Import candidates: a multipart JSONL `file` or a JSON list of rows (public contract).
    A file or body over RLHF_IMPORT_INLINE_MAX_MB is imported by a job: 202 with its id."""
    if _is_multipart(request):
        data, _size, _name, fields = await _upload(request)
        try:
            spec = CandidateImportJson(
                rows=[], rules=_form_rules(fields),
                rank_tasks=fields.get("rank_tasks", "").lower() in ("1", "true", "on", "yes"),
                overlap=int(fields.get("overlap") or 1), priority=int(fields.get("priority") or 0))
        except ValidationError as exc:
            raise prompts.PromptError(
                f"Invalid options: {describe(validation_errors(exc.errors()))}", 422) from exc
        except ValueError as exc:
            raise prompts.PromptError("Invalid options: `overlap` and `priority` are whole "
                                      "numbers.", 422) from exc
        options = spec.model_dump(exclude={"rows", "rules"})
        if not isinstance(data, bytes):  # kept on disk for a job
            return _accepted(_queue(db, background, "candidates", data, _name, spec.rules,
                                    options, user))
        report = await run_in_threadpool(
            candidate_import.import_candidates_file, db=db, data=data, rules=spec.rules, **options)
    else:
        size = await _json_size(request)
        body = await _json_body(request, CandidateImportJson)
        options = body.model_dump(exclude={"rows", "rules"})
        if uploads.runs_as_job(size):
            return _accepted(_queue(db, background, "candidates", body.rows, "body.json",
                                    body.rules, options, user))
        report = await run_in_threadpool(
            candidate_import.import_candidates, db=db, objects=enumerate(body.rows, start=1),
            rules=body.rules, **options)
    return report


@router.get("/api/v1/prompts", response_model=PromptPage)
def list_api(
    db: DbSession, _: Staff, split: Split | None = None, category: Text | None = None,
    source: PromptSource | None = None, end_user_id: Text | None = None, q: Text | None = None,
    limit: PageSize = PAGE, offset: Offset = 0,
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


@router.get("/prompts", response_class=HTMLResponse)
def prompts_page(
    request: Request, db: DbSession, _: Staff, split: Split | None = None,
    category: Text | None = None, source: PromptSource | None = None, q: Text | None = None,
    page: PageNumber = 1,
) -> Response:
    page = max(page, 1)
    items, total = prompts.list_prompts(db=db, split=split, category=category or None,
                                        source=source, q=q or None, limit=PAGE,
                                        offset=(page - 1) * PAGE)
    report = request.session.pop("import_report", None)
    return render(request, "prompts/index.html", items=items, total=total, page=page,
                  pages=max(1, -(-total // PAGE)), counts=prompts.prompt_counts(db=db),
                  filters={"split": split.value if split else "", "category": category or "",
                           "source": source.value if source else "", "q": q or ""},
                  splits=list(Split), sources=list(PromptSource), categories=CATEGORIES,
                  rules=ImportRules(), report=report,
                  inline_mb=get_settings().import_inline_max_mb,
                  max_mb=get_settings().import_max_upload_mb)


@router.post("/prompts/import", status_code=303, response_class=RedirectResponse,
             responses=errors(400, 413), openapi_extra=upload_body(),
             max_body_size=uploads.max_body_bytes())
async def import_page(request: Request, db: DbSession, user: Staff,
                      background: BackgroundTasks) -> Response:
    data, size, name, fields = await _upload(request)
    try:
        rules, strict = _form_rules(fields), fields.get("strict") == "on"
        if not isinstance(data, bytes):  # kept on disk for a job
            job = _queue(db, background, "prompts", data, name, rules, {"strict": strict}, user)
            flash(request, f"{name or 'The file'} ({size / 2**20:.1f} MB) is being "
                           f"imported by job {job.id}: its report appears here when done.",
                  "success")
            return RedirectResponse(f"/jobs/{job.id}", status_code=303)
        report = await run_in_threadpool(
            prompts.import_file, db=db, data=data, filename=name, rules=rules,
            user=user, strict=strict)
    except prompts.ImportFailed as exc:
        request.session["import_report"] = {"failed": str(exc), **exc.report.summary()}
        flash(request, str(exc), "error")
        return RedirectResponse("/prompts", status_code=303)
    except prompts.PromptError as exc:
        flash(request, str(exc), "error")
        return RedirectResponse("/prompts", status_code=303)
    summary = report.summary()
    summary["issues"] = summary["issues"][:50]  # the session cookie is small
    request.session["import_report"] = summary
    flash(request, f"Imported {report.accepted} prompts ({report.merged} duplicates merged, "
                   f"{report.capped} capped, {report.rejected} rejected).", "success")
    return RedirectResponse("/prompts", status_code=303)


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


@router.get("/admin/use-cases", response_class=HTMLResponse)
def use_cases_page(request: Request, db: DbSession, _: Admin) -> Response:
    return _use_cases(request, db, {})


def _use_cases(request: Request, db: Session, form: dict[str, str]) -> Response:
    return render(request, "prompts/use_cases.html", use_cases=prompts.list_use_cases(db=db),
                  form=form)


def _use_cases_again(request: Request, form: dict[str, str], message: str) -> Response:
    flash(request, message, "error")
    # Only the add form is filled in again; a row's form shows the row as stored.
    with session_scope(read_only=True) as db:  # a page shown again only reads
        return _use_cases(request, db, form if request.url.path == "/admin/use-cases" else {})


@router.post("/admin/use-cases", status_code=303, response_class=RedirectResponse,
             responses=errors(409))
@redisplays(_use_cases_again)
def use_cases_create(
    request: Request, db: DbSession, _: Admin, name: Annotated[Text, Form(max_length=200)],
    description: Annotated[Text, Form(max_length=5000)] = "",
) -> Response:
    prompts.create_use_case(db=db, name=name, description=description)
    flash(request, f"Added use case {name.strip()!r}.", "success")
    return RedirectResponse("/admin/use-cases", status_code=303)


@router.post("/admin/use-cases/{use_case_id}", status_code=303, response_class=RedirectResponse,
             responses=errors(409))
@redisplays(_use_cases_again)
def use_cases_update(
    request: Request, db: DbSession, _: Admin, use_case_id: Id,
    name: Annotated[Text | None, Form(max_length=200)] = None,
    description: Annotated[Text | None, Form(max_length=5000)] = None,
    active: Annotated[bool | None, Form()] = None,
) -> Response:
    prompts.update_use_case(db=db, use_case_id=use_case_id, name=name,
                            description=description, active=active)
    flash(request, "Use case saved.", "success")
    return RedirectResponse("/admin/use-cases", status_code=303)
