"""HTML pages of this domain (researchers and admins): model versions by kind with their
aliases and the aliases' history, one version's lineage, metrics, job and generated
candidates, promote and roll back, and two versions compared side by side."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.auth.deps import STAFF, Staff
from app.db import DbSession
from app.errors import errors
from app.fields import Id, checked
from app.jobs import service as jobs
from app.jobs.errors import JobError
from app.registry import generation, views
from app.registry import service as registry
from app.registry.models import ModelVersion
from app.templating import add_nav, flash, render

router = APIRouter()
add_nav("Models", "/models", STAFF, "Model versions, their lineage and aliases: promote, roll "
        "back, compare.")

VersionId = Annotated[Id | None, Query()]


async def _form(request: Request) -> dict[str, Any]:
    data = await request.form()  # already parsed (and cached) by the CSRF check
    return {k: v for k, v in data.items() if isinstance(v, str)}


Form = Annotated[dict[str, Any], Depends(_form)]


def _get(db: DbSession, version_id: int) -> Any:
    return registry.get_version(db=db, version_id=version_id)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, db: DbSession, _: Staff) -> Response:
    """Versions by kind with their aliases, and every move of the aliases."""
    versions = registry.list_versions(db=db)
    names = {v.id: v.name for v in versions}
    history = registry.history(db=db, limit=50)
    return render(request, "models/index.html", groups=views.by_kind(versions),
                  aliases=registry.aliases(db=db), history=history, names=names,
                  who=views.emails(db=db, user_ids={e.user_id for e in history}),
                  rollback=views.rollback_targets(db=db))


@router.get("/models/compare", response_class=HTMLResponse, responses=errors(404))
def compare_page(request: Request, db: DbSession, _: Staff, a: VersionId = None,
                 b: VersionId = None) -> Response:
    """Two versions' metrics (and the settings where they differ) side by side."""
    versions = registry.list_versions(db=db)
    va = _get(db, a) if a else None
    vb = _get(db, b) if b else None
    metrics: list[views.MetricRow] = []
    config: list[tuple[str, Any, Any]] = []
    if va is not None and vb is not None:
        metrics, config = views.compare_metrics(va, vb), views.compare_config(va, vb)
    return render(request, "models/compare.html", versions=versions, a=va, b=vb,
                  metrics=metrics, config=config, aliases=registry.aliases(db=db))


# What higher layers show on a model's page, as template context for one version: the
# snapshots it was trained on (exports), its campaigns and verdict (evaluation). They
# register here when imported, since the registry imports neither.
PagePart = Callable[[Session, ModelVersion], dict[str, Any]]
MODEL_PAGE_PARTS: list[PagePart] = []


def model_page_part(part: PagePart) -> PagePart:
    """Register a function that adds to a model's page."""
    MODEL_PAGE_PARTS.append(part)
    return part


@router.get("/models/{model_id:int}", response_class=HTMLResponse)  # not /models/rollback
def model_page(request: Request, db: DbSession, _: Staff, model_id: Id) -> Response:
    """One version: lineage, snapshots, metrics, its job, what it generated, promote."""
    version = _get(db, model_id)
    found = registry.lineage(db=db, version_id=version.id)
    count, samples = views.generated(db=db, version_id=version.id)
    aliases = registry.aliases(db=db)
    active = (registry.alias_target(db=db, alias=f"{version.kind}:active")
              if version.kind in registry.ALIAS_KINDS else None)
    parts: dict[str, Any] = {"verdict": None, "campaigns": [], "snapshots": []}
    for part in MODEL_PAGE_PARTS:
        parts.update(part(db, version))
    rollback = views.rollback_targets(db=db).get(version.kind)
    others = sorted((v for v in registry.list_versions(db=db) if v.id != version.id),
                    key=lambda v: (v.kind != version.kind, -v.id))
    return render(request, "models/model.html", version=version, **parts,
                  ancestors=list(reversed(found["ancestors"])), children=found["children"],
                  round_versions=views.round_versions(db=db, version=version),
                  neighbours=views.neighbours(db=db, version=version),
                  job=views.job_of(db=db, version=version), n_generated=count,
                  samples=samples, aliases=aliases, active=active,
                  promotable=version.kind in registry.ALIAS_KINDS,
                  rollback=rollback,
                  rollback_name=next((v.name for v in others if v.id == rollback), ""),
                  metrics=views.flat(version.metrics), others=others,
                  compare_default=views.compare_default(version, others))


@router.post("/models/rollback")
def rollback(request: Request, db: DbSession, user: Staff, form: Form) -> Response:
    """Move `<kind>:active` back to where it pointed before its last move."""
    kind = str(form.get("kind", ""))[:20]
    try:
        with db.begin_nested():
            version = registry.rollback(db=db, kind=kind, user_id=user.id)
    except JobError as exc:
        flash(request, f"Not rolled back: {exc}", "error")
        return RedirectResponse("/models", status_code=303)
    flash(request, f"{kind}:active rolled back to {version.name} (version {version.id}).",
          "success")
    return RedirectResponse(f"/models/{version.id}", status_code=303)


@router.post("/models/{model_id}/promote")
def promote(request: Request, db: DbSession, user: Staff, model_id: Id, form: Form,
            background: BackgroundTasks) -> Response:
    """Move `<kind>:active` to this version; for a policy, optionally generate rank tasks."""
    job = None
    try:
        with db.begin_nested():
            version = registry.promote(db=db, version_id=model_id, user_id=user.id)
            if checked(form, "generate"):
                if version.kind != "policy":
                    raise JobError("Only a promoted policy generates new rank tasks here.", 422)
                jobs.require_broker()
                config: dict[str, Any] = {}
                for key in ("k", "n_prompts", "overlap"):
                    text = str(form.get(f"gen_{key}", "")).strip()
                    if text:
                        if not text.isdigit() or len(text) > 9:
                            raise JobError(f"generate {key} must be a whole number, not "
                                           f"{text[:40]!r}.", 422)
                        config[key] = int(text)
                job = generation.request(db=db, config=config, user=user)
    except JobError as exc:
        flash(request, f"Not promoted: {exc}", "error")
        return RedirectResponse(f"/models/{model_id}", status_code=303)
    message = f"{version.name} is now {version.kind}:active."
    if job is not None:
        background.add_task(jobs.dispatch, [job.id])
        message += f" Generating new rank tasks: job {job.id}."
    flash(request, message, "success")
    return RedirectResponse(f"/models/{model_id}", status_code=303)
