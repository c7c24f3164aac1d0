"""The agreement pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.agreement import service
from app.agreement.loading import Filters
from app.agreement.schemas import (
    AgreementQuery,
)
from app.auth.deps import Staff
from app.db import DbSession
from app.templating import render

router = APIRouter()


Params = Annotated[AgreementQuery, Query()]


def _filters(q: AgreementQuery) -> Filters:
    return service.make_filters(**q.model_dump())


@router.get("/agreement", response_class=HTMLResponse)
def agreement_page(request: Request, db: DbSession, _: Staff, q: Params) -> Response:
    page = service.page(db=db, filters=_filters(q))
    return render(request, "agreement/index.html", query=q, **page)


@router.get("/agreement.csv", response_class=Response, responses={
    200: {"description": "Per-labeler figures", "content": {"text/csv": {}}}})
def agreement_csv(db: DbSession, _: Staff, q: Params) -> Response:
    text = service.labeler_csv(db=db, filters=_filters(q))
    return Response(text, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="agreement-{q.kind}.csv"'})
