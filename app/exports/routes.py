"""Exports: the JSON API (researchers and admins; never labelers); the page is in pages.py."""

from typing import Any, Literal

from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    Response,
)

from app.auth.deps import STAFF, Staff
from app.db import DbSession
from app.errors import ErrorBody, errors
from app.exports import pages, service, tasks
from app.exports.schemas import ExportCreate, SnapshotRead
from app.fields import Id
from app.templating import add_nav

router = APIRouter()
add_nav("Exports", "/exports", STAFF, "Dataset snapshots for training: create, list, download.")

MEDIA = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


@router.post("/api/v1/exports", response_model=SnapshotRead, status_code=201,
             responses={202: {"model": SnapshotRead, "description": "Queued as a job"},
                        **errors(500)})
def create_export(
    db: DbSession, user: Staff, body: ExportCreate, background: BackgroundTasks,
    response: Response,
) -> Any:
    """Create a snapshot: built now when small (201), else queued as a job (202); a build
    that failed is a 500 saying why, its snapshot kept as failed."""
    snapshot = service.request_export(db=db, user=user, request=body)
    if snapshot.state == "pending":
        background.add_task(tasks.enqueue, snapshot.id)  # after the response: after the commit
        response.status_code = 202
    if snapshot.state == "failed":  # returned, not raised: the failed row is committed
        failed = ErrorBody(detail=f"Snapshot {snapshot.id} could not be built: "
                                  f"{snapshot.error}")
        return JSONResponse({**failed.model_dump(mode="json"), "snapshot_id": snapshot.id},
                            status_code=500)
    return SnapshotRead.model_validate(snapshot)


@router.get("/api/v1/exports", response_model=list[SnapshotRead])
def list_exports(db: DbSession, _: Staff) -> list[SnapshotRead]:
    """The newest snapshots first."""
    return [SnapshotRead.model_validate(s) for s in service.list_snapshots(db=db)]


@router.get("/api/v1/exports/{snapshot_id}", response_model=SnapshotRead)
def get_export(db: DbSession, _: Staff, snapshot_id: Id) -> SnapshotRead:
    """One snapshot with its state, progress and manifest."""
    return SnapshotRead.model_validate(service.get_snapshot(db=db, snapshot_id=snapshot_id))


@router.get("/api/v1/exports/{snapshot_id}/download", response_class=FileResponse,
            responses={200: {"description": "The data file or the manifest", "content": {
                **{media: {} for media in MEDIA.values()}, "application/json": {}}},
                **errors(409)})
def download_export(
    db: DbSession, _: Staff, snapshot_id: Id, file: Literal["data", "manifest"] = "data"
) -> FileResponse:
    """The snapshot's data file (or ?file=manifest), streamed from disk."""
    path = service.file_for(db=db, snapshot_id=snapshot_id, which=file)
    media = "application/json" if file == "manifest" else MEDIA[path.suffix.lstrip(".")]
    return FileResponse(path, media_type=media,
                        filename=f"snapshot-{snapshot_id}-{path.name}")


router.include_router(pages.router)
