"""The HTTP side of an upload (prompts or candidates): what the import routes of both
domains share to read a multipart file or a JSON body, and to answer 202 for a large one.

An upload (a multipart file, or a JSON body of the API's objects, kept as a JSON list once
checked) over RLHF_IMPORT_INLINE_MAX_MB is kept and a queued `import` job (jobs.py) is
recorded in the request's transaction; the client gets 202 with the job's id at once and
follows its progress (GET /api/v1/jobs/{id}, or the job's page), and the job's outputs are
the import's report. Anything smaller is imported in the request as before, with its report
in the answer.
"""

import json
from typing import Any, BinaryIO

from fastapi import BackgroundTasks, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from app.config import get_settings
from app.errors import describe, validation_errors
from app.jobs import service as jobs
from app.jobs.models import Job
from app.prompts import jobs as import_jobs
from app.prompts import service as prompts
from app.prompts.rules import ImportRules
from app.prompts.schemas import ImportQueued


def max_upload_bytes() -> int:
    return int(get_settings().import_max_upload_mb * 2**20)


def max_body_bytes() -> int:
    """The largest body an upload route reads: the upload plus its multipart form."""
    return max_upload_bytes() + 2**20


def runs_as_job(size: int) -> bool:
    """Whether an upload of `size` bytes is imported by a job rather than in the request."""
    return size > get_settings().import_inline_max_mb * 2**20


IMPORT_QUEUED: dict[int | str, dict[str, Any]] = {202: {
    "model": ImportQueued,
    "description": "A large upload: imported by a job, whose outputs are the report "
                   "(GET /api/v1/jobs/{job_id})"}}


def send_after_commit(job_ids: list[int]) -> None:
    # Runs after the response, so after the commit that made the job visible to workers.
    jobs.dispatch(job_ids)


async def read_upload(request: Request) -> tuple[bytes | BinaryIO, int, str, dict[str, Any]]:
    """The uploaded file, its size, its name, and the other form fields. The file is its
    bytes when it is imported in the request; one for a job stays the spooled file on disk
    (the multipart parser writes a file past 1 MB there), copied in chunks by the job."""
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise prompts.PromptError("Attach the file as the multipart field `file`.")
    size = upload.file.seek(0, 2)
    upload.file.seek(0)
    limit = max_upload_bytes()
    if size > limit:
        raise prompts.PromptError(f"The file is larger than {limit / 2**20:g} MB "
                                  "(RLHF_IMPORT_MAX_UPLOAD_MB).", 413)
    data = upload.file if runs_as_job(size) else await upload.read()
    fields = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    return data, size, upload.filename or "", fields


def form_rules(fields: dict[str, Any]) -> ImportRules:
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


async def json_body(request: Request, schema: Any, list_key: str) -> Any:
    """The JSON body validated by `schema`; a bare list is its `list_key` field."""
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise prompts.PromptError("Send a JSON body or a multipart file.") from exc
    except RecursionError as exc:
        raise prompts.PromptError("The JSON body is nested too deeply.") from exc
    if isinstance(payload, list):
        payload = {list_key: payload}
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(  # the same 422 as any other route's body
            [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]}
             for e in exc.errors()]) from exc


async def json_size(request: Request) -> int:
    """The JSON body's size; over the upload limit it is refused (413) before parsing."""
    size = len(await request.body())
    if size > max_upload_bytes():
        raise prompts.PromptError(f"The body is larger than "
                                  f"{max_upload_bytes() / 2**20:g} MB "
                                  "(RLHF_IMPORT_MAX_UPLOAD_MB).", 413)
    return size


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def queue_upload(db: Session, background: BackgroundTasks, what: str,
                 upload: bytes | BinaryIO | list[Any], name: str, rules: ImportRules,
                 options: dict[str, Any], user: Any) -> Job:
    """Keep an upload for an import job, sent once the request has committed. `upload`: a
    file's bytes, or a JSON body's objects (checked already), kept as a JSON list."""
    objects = len(upload) if isinstance(upload, list) else None
    data = json.dumps(upload).encode() if isinstance(upload, list) else upload
    job = import_jobs.queue_import(db=db, what=what, data=data, filename=name, user=user,
                                   objects=objects,
                                   options={**options, "rules": rules.model_dump(mode="json")})
    background.add_task(send_after_commit, [job.id])
    return job


def accepted(job: Job) -> JSONResponse:
    body = ImportQueued(job_id=job.id, state=job.state, bytes=job.config["bytes"],
                        status_url=f"/api/v1/jobs/{job.id}")
    return JSONResponse(body.model_dump(), status_code=202)
