"""Exports: the snapshots page and the JSON API (researchers and admins; never labelers)."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.deps import STAFF, Staff
from app.db import DbSession, session_scope
from app.errors import ErrorBody, errors, redisplays
from app.exports import service
from app.exports.models import DatasetSnapshot
from app.exports.schemas import FORMATS, KINDS, ExportCreate, SnapshotRead, describe, from_form
from app.fields import Id, Text
from app.prompts.models import Split
from app.queue.models import TaskKind
from app.registry import service as registry
from app.registry.models import ModelVersion
from app.registry.pages import model_page_part
from app.templating import add_nav, flash, render

router = APIRouter()
add_nav("Exports", "/exports", STAFF, "Dataset snapshots for training: create, list, download.")

FormStr = Annotated[Text, Form(max_length=2000)]
MEDIA = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def _enqueue(snapshot_id: Id) -> None:
    # Runs after the response, so after the commit that made the row visible to workers.
    from app.exports import tasks

    tasks.enqueue(snapshot_id)


def _page(request: Request, db: Session, form: dict[str, str]) -> Response:
    snapshots = service.list_snapshots(db=db)
    return render(request, "exports/index.html", snapshots=snapshots, kinds=KINDS,
                  formats=FORMATS, splits=[s.value for s in Split],
                  task_kinds=[k.value for k in TaskKind], form=form,
                  building=any(s.state in ("pending", "running") for s in snapshots))


def _form_again(request: Request, form: dict[str, str], message: str) -> Response:
    flash(request, f"Export not created: {message}", "error")
    with session_scope(read_only=True) as db:  # a page shown again only reads
        return _page(request, db, form)


@router.get("/exports", response_class=HTMLResponse)
def exports_page(request: Request, db: DbSession, _: Staff) -> Response:
    return _page(request, db, {})


@router.post("/exports", status_code=303, response_class=RedirectResponse,
             responses=errors(422))
@redisplays(_form_again)
def exports_create_form(
    request: Request, db: DbSession, user: Staff, background: BackgroundTasks,
    kind: FormStr = "", format: FormStr = "jsonl", chat: FormStr = "", split: FormStr = "",
    since: FormStr = "", until: FormStr = "", task_kind: FormStr = "",
    labeler_ids: FormStr = "", held_out: FormStr = "", model_version_id: FormStr = "",
    min_agreement: FormStr = "", max_id: FormStr = "", include_rejected: FormStr = "",
) -> Response:
    fields = {
        "kind": kind, "format": format, "chat": chat, "split": split, "since": since,
        "until": until, "task_kind": task_kind, "labeler_ids": labeler_ids,
        "held_out": held_out, "model_version_id": model_version_id,
        "min_agreement": min_agreement, "max_id": max_id, "include_rejected": include_rejected,
    }
    try:
        export = from_form(fields)
    except ValidationError as exc:
        raise service.ExportError(describe(exc)) from exc
    snapshot = service.request_export(db=db, user=user, request=export)
    if snapshot.state == "pending":
        background.add_task(_enqueue, snapshot.id)
    flash(request, f"Snapshot {snapshot.id} ({snapshot.kind}): {snapshot.state}.",
          "error" if snapshot.state == "failed" else "success")
    return RedirectResponse("/exports", status_code=303)


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
        background.add_task(_enqueue, snapshot.id)
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


@model_page_part
def _trained_on(db: Session, version: ModelVersion) -> dict[str, Any]:
    """The dataset snapshots a version was trained on, for its model page."""
    ids = registry.snapshot_ids(db=db, version_id=version.id)
    if not ids:
        return {"snapshots": []}
    return {"snapshots": list(db.scalars(select(DatasetSnapshot)
                                         .where(DatasetSnapshot.id.in_(ids))
                                         .order_by(DatasetSnapshot.id)))}
