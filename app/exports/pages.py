"""The exports pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
)
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.deps import Staff
from app.db import DbSession, session_scope
from app.errors import errors, redisplays
from app.exports import service, tasks
from app.exports.models import DatasetSnapshot
from app.exports.schemas import FORMATS, KINDS, describe, from_form
from app.fields import Text
from app.prompts.models import Split
from app.queue.models import TaskKind
from app.registry import service as registry
from app.registry.models import ModelVersion
from app.registry.pages import model_page_part
from app.templating import flash, render

router = APIRouter()


FormStr = Annotated[Text, Form(max_length=2000)]


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
        background.add_task(tasks.enqueue, snapshot.id)  # after the response: after the commit
    flash(request, f"Snapshot {snapshot.id} ({snapshot.kind}): {snapshot.state}.",
          "error" if snapshot.state == "failed" else "success")
    return RedirectResponse("/exports", status_code=303)


@model_page_part
def _trained_on(db: Session, version: ModelVersion) -> dict[str, Any]:
    """The dataset snapshots a version was trained on, for its model page."""
    ids = registry.snapshot_ids(db=db, version_id=version.id)
    if not ids:
        return {"snapshots": []}
    return {"snapshots": list(db.scalars(select(DatasetSnapshot)
                                         .where(DatasetSnapshot.id.in_(ids))
                                         .order_by(DatasetSnapshot.id)))}
