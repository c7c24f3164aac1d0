"""A large upload (prompts or candidates) is imported by a job, not inside the request.

An upload (a multipart file, or a JSON body of the API's objects, kept as a JSON list once
checked) over RLHF_IMPORT_INLINE_MAX_MB is kept under data_dir/imports and a queued
`import` job is recorded in the request's transaction; the client gets 202 with the job's
id at once and follows its progress (GET /api/v1/jobs/{id}, or the job's page), and the
job's outputs are the import's report. Anything smaller is imported in the request as
before, with its report in the answer.

The job imports in one transaction that also writes the report onto its row, so what an
upload stored and the report saying so commit together: a worker killed mid-import stores
nothing, and a retried attempt whose predecessor committed returns that report instead of
importing again. A 50 MB import took ten minutes in a request the client had long given up
on; here the request takes as long as the upload.
"""

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import BackgroundTasks, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from app.auth.models import User
from app.config import get_settings
from app.errors import describe, validation_errors
from app.jobs import service as jobs
from app.jobs.errors import JobFailed
from app.jobs.kinds import JobContext, job_kind
from app.jobs.models import Job, JobState
from app.prompts import service as prompts
from app.prompts.rules import ImportRules
from app.prompts.schemas import ImportQueued

# What an upload holds -> the function that imports it in the job's transaction:
# (db, data, objects, config, rules, options, progress) -> the report. The prompts domain
# registers "prompts" below; the queue registers "candidates" (app.queue.candidates).
Importer = Callable[..., dict[str, Any]]
IMPORTERS: dict[str, Importer] = {}


def imports(what: str) -> Callable[[Importer], Importer]:
    """Register the decorated function as the importer of uploads of this kind."""
    def register(importer: Importer) -> Importer:
        IMPORTERS[what] = importer
        return importer
    return register


PROGRESS_EVERY = 200  # rows between progress reports and cancel checks


def upload_dir() -> Path:
    return (get_settings().data_dir / "imports").resolve()


def max_upload_bytes() -> int:
    return int(get_settings().import_max_upload_mb * 2**20)


def max_body_bytes() -> int:
    """The largest body an upload route reads: the upload plus its multipart form."""
    return max_upload_bytes() + 2**20


def runs_as_job(size: int) -> bool:
    """Whether an upload of `size` bytes is imported by a job rather than in the request."""
    return size > get_settings().import_inline_max_mb * 2**20


def queue_import(*, db: Session, what: str, data: bytes | BinaryIO, filename: str,
                 options: dict[str, Any], user: User | None, objects: int | None = None) -> Job:
    """Keep the upload and record its import job (sent once the caller has committed).
    `data`: the bytes, or a file (a multipart upload, already on disk) copied in chunks.
    `objects`: the data is a JSON list of this many of the API's objects (a JSON body)."""
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(filename).suffix.lower() if Path(filename).suffix.lower() in (
        ".jsonl", ".csv", ".json") else ".jsonl"
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    partial = path.with_name(f".{path.name}.part")
    with partial.open("wb") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:  # never the whole upload in memory
            data.seek(0)
            shutil.copyfileobj(data, out, 2**20)
        size = out.tell()
    partial.replace(path)
    return jobs.submit(db=db, kind="import", user=user, config={
        "what": what, "upload": str(path), "filename": filename, "bytes": size,
        "objects": objects is not None, "rows": objects, "options": options,
        "user_id": user.id if user else None})


def _committed_report(db: Session, job_id: int) -> dict[str, Any] | None:
    """The report an earlier attempt of this import committed with its rows, if any."""
    job = db.get(Job, job_id)
    while job is not None and job.retry_of_id is not None:
        job = db.get(Job, job.retry_of_id)
        if job is not None and job.outputs.get("imported"):
            return dict(job.outputs)
    return None


def _import(db: Session, ctx: JobContext, data: bytes, progress: Any) -> dict[str, Any]:
    config, options = ctx.config, dict(ctx.config["options"])
    rules = ImportRules.model_validate(options.pop("rules", {}))
    objects = json.loads(data) if config.get("objects") else None
    importer = IMPORTERS.get(config["what"])
    if importer is None:
        raise JobFailed(f"Nothing imports uploads of {config['what']!r}.")
    return {**importer(db=db, data=data, objects=objects, config=config, rules=rules,
                       options=options, progress=progress), "imported": True}


@imports("prompts")
def _import_prompts(*, db: Session, data: bytes, objects: list[Any] | None,
                    config: dict[str, Any], rules: ImportRules, options: dict[str, Any],
                    progress: Any) -> dict[str, Any]:
    user = db.get(User, config["user_id"]) if config.get("user_id") else None
    strict = bool(options.get("strict"))
    try:
        found = (prompts.import_objects(db=db, objects=objects, rules=rules, user=user,
                                        strict=strict, progress=progress)
                 if objects is not None else
                 prompts.import_file(db=db, data=data, filename=config["filename"],
                                     rules=rules, user=user, strict=strict, progress=progress))
    except prompts.ImportFailed as exc:
        raise JobFailed(str(exc)) from exc
    except prompts.PromptError as exc:
        raise JobFailed(str(exc)) from exc
    return found.summary()


def _forget_upload(db: Session, job: Job) -> None:
    """A cancelled import's upload is removed; a failed one's is kept for its retry."""
    del db
    if job.state == JobState.cancelled:
        Path(job.config["upload"]).unlink(missing_ok=True)


@job_kind("import", on_failure=_forget_upload, label="import")
def import_upload(ctx: JobContext) -> dict[str, Any]:
    """Import the kept upload in one transaction, reporting progress as it goes."""
    path = Path(ctx.config["upload"])
    with ctx.session() as db:
        earlier = _committed_report(db, ctx.job_id)
    if earlier is not None:
        ctx.log("an earlier attempt committed this import; its report stands")
        path.unlink(missing_ok=True)
        return earlier
    if not path.is_file():
        raise JobFailed("The uploaded file is no longer kept: upload it again.")
    data = path.read_bytes()
    rows = max(1, int(ctx.config.get("rows") or 0)
               or data.count(b"\n") + (0 if data.endswith(b"\n") else 1))
    seen = 0

    def progress() -> None:
        nonlocal seen
        seen += 1
        if seen % PROGRESS_EVERY == 0:
            ctx.check_cancelled()  # before the commit: a cancelled import stores nothing
            ctx.progress(min(0.99, seen / rows))

    with ctx.session() as db:
        report = _import(db, ctx, data, progress)
        ctx.check_cancelled()
        # The report commits with the rows it describes (see the module's docstring).
        db.execute(update(Job).where(Job.id == ctx.job_id).values(outputs=report))
    path.unlink(missing_ok=True)
    ctx.log(f"imported {ctx.config['what']}: " + ", ".join(
        f"{k} {v}" for k, v in report.items() if isinstance(v, int) and not isinstance(v, bool)))
    return report


# --- the HTTP side of an upload (the import routes of prompts and candidates) ----------

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
    job = queue_import(db=db, what=what, data=data, filename=name, user=user,
                               objects=objects,
                               options={**options, "rules": rules.model_dump(mode="json")})
    background.add_task(send_after_commit, [job.id])
    return job


def accepted(job: Job) -> JSONResponse:
    body = ImportQueued(job_id=job.id, state=job.state, bytes=job.config["bytes"],
                        status_url=f"/api/v1/jobs/{job.id}")
    return JSONResponse(body.model_dump(), status_code=202)
