"""The prompts pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.auth.deps import Admin, Staff
from app.config import get_settings
from app.db import DbSession, session_scope
from app.errors import errors, redisplays, upload_body
from app.fields import Id, PageNumber, Text
from app.prompts import service as prompts
from app.prompts import uploads
from app.prompts.models import CATEGORIES, PromptSource, Split
from app.prompts.rules import ImportRules
from app.templating import flash, render

router = APIRouter()


@router.get("/prompts", response_class=HTMLResponse)
def prompts_page(
    request: Request, db: DbSession, _: Staff, split: Split | None = None,
    category: Text | None = None, source: PromptSource | None = None, q: Text | None = None,
    page: PageNumber = 1,
) -> Response:
    page = max(page, 1)
    items, total = prompts.list_prompts(db=db, split=split, category=category or None,
                                        source=source, q=q or None, limit=prompts.PAGE_SIZE,
                                        offset=(page - 1) * prompts.PAGE_SIZE)
    report = request.session.pop("import_report", None)
    return render(request, "prompts/index.html", items=items, total=total, page=page,
                  pages=max(1, -(-total // prompts.PAGE_SIZE)), counts=prompts.prompt_counts(db=db),
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
    data, size, name, fields = await uploads.read_upload(request)
    try:
        rules, strict = uploads.form_rules(fields), fields.get("strict") == "on"
        if not isinstance(data, bytes):  # kept on disk for a job
            job = uploads.queue_upload(db, background, "prompts", data, name, rules,
                                       {"strict": strict}, user)
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
