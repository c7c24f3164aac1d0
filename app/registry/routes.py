"""Model versions, aliases and candidate generation: pages and JSON API (researchers, admins)."""

import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.responses import StreamingResponse

from app import store
from app.auth.deps import Staff
from app.db import DbSession
from app.errors import errors
from app.fields import Id, Text
from app.jobs import service as jobs
from app.jobs.errors import JobError
from app.registry import generation, pages
from app.registry import service as registry
from app.registry.models import ModelVersion
from app.registry.schemas import (
    AliasEventRead,
    GenerateRequest,
    JobAccepted,
    Lineage,
    ModelRead,
    RollbackRequest,
)

router = APIRouter()



def _send(job_ids: list[int]) -> None:
    # Runs after the response, so after the commit that made the job visible to workers.
    jobs.dispatch(job_ids)


def model_read(db: DbSession, version: ModelVersion,
               aliases: dict[int, list[str]] | None = None) -> ModelRead:
    """A version with its snapshots and aliases."""
    out = ModelRead.model_validate(version)
    out.snapshot_ids = registry.snapshot_ids(db=db, version_id=version.id)
    out.aliases = (aliases if aliases is not None else registry.aliases(db=db)).get(version.id, [])
    return out


@router.get("/api/v1/models", response_model=list[ModelRead])
def list_models(
    db: DbSession, _: Staff, kind: Literal["base", "sft", "rm", "policy"] | None = None,
) -> list[ModelRead]:
    """Model versions, newest first."""
    names = registry.aliases(db=db)
    return [model_read(db, v, names) for v in registry.list_versions(db=db, kind=kind)]


@router.get("/api/v1/models/aliases/history", response_model=list[AliasEventRead])
def alias_history(db: DbSession, _: Staff,
                  alias: Text | None = Query(None, max_length=60)) -> list[AliasEventRead]:
    """Every move of the aliases: who, when, from → to."""
    return [AliasEventRead.model_validate(e) for e in registry.history(db=db, alias=alias)]


@router.post("/api/v1/models/rollback", response_model=ModelRead, responses=errors(409))
def rollback(db: DbSession, user: Staff, body: RollbackRequest) -> ModelRead:
    """Move `<kind>:active` back to the version it pointed at before its last move."""
    return model_read(db, registry.rollback(db=db, kind=body.kind, user_id=user.id))


@router.get("/api/v1/models/{model_id:int}", response_model=ModelRead)  # not .../rollback
def get_model(db: DbSession, _: Staff, model_id: Id) -> ModelRead:
    """One version."""
    return model_read(db, registry.get_version(db=db, version_id=model_id))


@router.post("/api/v1/models/{model_id}/promote", response_model=ModelRead,
             responses=errors(409))
def promote(
    db: DbSession, user: Staff, model_id: Id, background: BackgroundTasks,
    generate: bool = Query(True, description="a policy: also start a generate job"),
) -> ModelRead:
    """Move `<kind>:active` to this version; a promoted policy then generates candidates."""
    version = registry.promote(db=db, version_id=model_id, user_id=user.id)
    job = (generation.request(db=db, config={}, user=user)
           if generate and version.kind == "policy" else None)
    out = model_read(db, version)
    if job is not None:
        out.generate_job_id = job.id
        background.add_task(_send, [job.id])
    return out


@router.get("/api/v1/models/{model_id}/lineage", response_model=Lineage)
def lineage(db: DbSession, _: Staff, model_id: Id) -> Lineage:
    """Ancestors back to the base model, and the versions built on this one."""
    found = registry.lineage(db=db, version_id=model_id)
    names = registry.aliases(db=db)
    return Lineage(version=model_read(db, found["version"], names),
                   ancestors=[model_read(db, v, names) for v in found["ancestors"]],
                   children=[model_read(db, v, names) for v in found["children"]])


@router.get("/api/v1/models/{model_id}/download", response_class=StreamingResponse,
            responses=errors(409))
def download(db: DbSession, _: Staff, model_id: Id) -> StreamingResponse:
    """The model directory as a .tar.gz (for researchers to load elsewhere)."""
    version = registry.get_version(db=db, version_id=model_id)
    with store.holding():  # the cache keeps the directory until it is packed
        try:
            path = Path(store.localize(version.path, sha256=version.sha256))
        except store.StoreError as exc:
            raise JobError(f"Version {model_id} cannot be read from the store: {exc}",
                           409) from exc
        if not path.is_dir():
            raise JobError(f"Version {model_id} has no directory on this server "
                           f"({version.path}).", 409)
        spool = tempfile.TemporaryFile()  # on disk: model directories are large
        with tarfile.open(fileobj=spool, mode="w:gz") as tar:
            tar.add(path, arcname=version.name)
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        with spool:
            yield from iter(lambda: spool.read(1 << 20), b"")

    headers = {"Content-Disposition": f'attachment; filename="{version.name}.tar.gz"'}
    return StreamingResponse(chunks(), media_type="application/gzip", headers=headers)


@router.post("/api/v1/generate", response_model=JobAccepted, status_code=202,
             responses=errors(404))
def generate(db: DbSession, user: Staff, body: GenerateRequest,
             background: BackgroundTasks) -> JobAccepted:
    """Sample fresh candidates and make rank tasks of them (a job; 202 with its id)."""
    jobs.require_broker()
    job = generation.request(db=db, config=body.model_dump(exclude_none=True), user=user)
    background.add_task(_send, [job.id])
    return JobAccepted(job_id=job.id)


router.include_router(pages.router)
