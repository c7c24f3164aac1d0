"""The agreement pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.agreement import service
from app.agreement.schemas import AgreementParams
from app.auth.deps import Staff
from app.db import DbSession
from app.templating import render

router = APIRouter()


@router.get("/agreement", response_class=HTMLResponse)
def agreement_page(request: Request, db: DbSession, _: Staff, q: AgreementParams) -> Response:
    page = service.page(db=db, filters=service.filters_for(query=q))
    return render(request, "agreement/index.html", query=q, **page)


@router.get("/agreement.csv", response_class=Response, responses={
    200: {"description": "Per-labeler figures", "content": {"text/csv": {}}}})
def agreement_csv(db: DbSession, _: Staff, q: AgreementParams) -> Response:
    text = service.labeler_csv(db=db, filters=service.filters_for(query=q))
    return Response(text, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="agreement-{q.kind}.csv"'})
