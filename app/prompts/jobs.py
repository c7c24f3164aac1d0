"""The `import` job kind: an upload (prompts or candidates) too large for a request is
kept under data_dir/imports and imported by a job (uploads.py is the HTTP side).

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

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.auth.models import User
from app.config import get_settings
from app.jobs import service as jobs
from app.jobs.errors import JobFailed
from app.jobs.kinds import JobContext, job_kind
from app.jobs.models import Job, JobState
from app.prompts import service as prompts
from app.prompts.rules import ImportRules

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
