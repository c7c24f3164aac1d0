"""The evaluation pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.auth.deps import Staff
from app.db import DbSession
from app.evaluation import jobs as tasks
from app.evaluation import (
    judging,  # noqa: F401 - counts judgments in the judges' My work
    service,
)
from app.evaluation import results as outcome
from app.evaluation.schemas import EvaluationCreate
from app.fields import Id, Int32, Text
from app.registry.models import ModelVersion
from app.registry.pages import model_page_part
from app.templating import flash, render

router = APIRouter()


@router.post("/evaluations/{evaluation_id}/close")
def close_form(request: Request, db: DbSession, user: Staff, evaluation_id: Id) -> Response:
    try:
        service.close(db=db, evaluation_id=evaluation_id, user=user)
    except service.EvaluationError as exc:
        flash(request, str(exc), "error")
    else:
        flash(request, f"Evaluation {evaluation_id} closed: its results are final.", "success")
    return RedirectResponse(f"/evaluations/{evaluation_id}", status_code=303)


@router.get("/evaluations/{evaluation_id}/results.csv")
def results_csv(db: DbSession, _: Staff, evaluation_id: Id) -> Response:
    data = outcome.results(db=db, evaluation_id=evaluation_id)
    return Response(outcome.results_csv(data=data), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="evaluation-{evaluation_id}.csv"'})


@router.get("/evaluations", response_class=HTMLResponse)
def index_page(request: Request, db: DbSession, _: Staff) -> Response:
    versions = service.versions_for_form(db=db)
    return render(request, "evaluation/index.html",
                  evaluations=service.describe(db=db,
                                               evaluations=service.list_evaluations(db=db)),
                  versions=versions, names={v.id: v.name for v in versions},
                  defaults=service.form_defaults(db=db))


@router.post("/evaluations")
def create_form(
    request: Request, db: DbSession, user: Staff, background: BackgroundTasks,
    baseline_id: Annotated[Id, Form()], n_prompts: Annotated[Int32, Form()],
    model_ids: Annotated[list[Id] | None, Form()] = None,
    overlap: Annotated[Int32, Form()] = 1, judges: Annotated[Text, Form()] = "held_out",
    name: Annotated[Text, Form()] = "", temperature: Annotated[float, Form()] = 0.7,
    top_p: Annotated[float, Form()] = 1.0,
    max_new_tokens: Annotated[Text, Form(max_length=10)] = "",
    seed: Annotated[Int32, Form()] = 0,
) -> Response:
    try:
        spec = EvaluationCreate.model_validate({
            "model_ids": model_ids or [], "baseline_id": baseline_id, "n_prompts": n_prompts,
            "overlap": overlap, "judges": judges, "name": name,
            "sampling": {"temperature": temperature, "top_p": top_p,
                         # blank: the candidates' own rollout length
                         "max_new_tokens": max_new_tokens.strip() or None, "seed": seed}})
        created, job_id = tasks.create(db=db, user=user, spec=spec)
        background.add_task(tasks.dispatch, job_id)  # after the response: after the commit
    except ValidationError as exc:
        flash(request, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors()), "error")
        return RedirectResponse("/evaluations", status_code=303)
    except service.EvaluationError as exc:
        flash(request, str(exc), "error")
        return RedirectResponse("/evaluations", status_code=303)
    flash(request, f"Evaluation {created.id} created: its outputs are being generated.",
          "success")
    return RedirectResponse(f"/evaluations/{created.id}", status_code=303)


@router.get("/evaluations/{evaluation_id}", response_class=HTMLResponse)
def results_page(request: Request, db: DbSession, _: Staff, evaluation_id: Id) -> Response:
    data = outcome.results(db=db, evaluation_id=evaluation_id)
    info = service.describe(db=db, evaluations=[service.get(db=db,
                                                            evaluation_id=evaluation_id)])
    return render(request, "evaluation/results.html", r=data, ev=info[0])


@model_page_part
def _judged(db: Session, version: ModelVersion) -> dict[str, Any]:
    """A version's campaigns, and for a policy people's verdict, for its model page."""
    verdict = (outcome.verdict(db=db, model_id=version.id) if version.kind == "policy"
               else None)
    return {"verdict": verdict, "campaigns": service.list_evaluations(db=db, model_id=version.id)}
