"""Agreement page, JSON API and CSV: staff only, labelers never see others' figures."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.agreement import service
from app.agreement.loading import Filters
from app.agreement.schemas import (
    AgreementPairs,
    AgreementQuery,
    AgreementSummary,
    AgreementTrends,
)
from app.auth.deps import STAFF, Staff
from app.db import DbSession
from app.templating import add_nav, render

router = APIRouter()
add_nav("Agreement", "/agreement", STAFF,
        "Inter-annotator agreement and labeler quality, per labeler and over time.")

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


@router.get("/api/v1/agreement/summary", response_model=AgreementSummary)
def agreement_summary(db: DbSession, _: Staff, q: Params) -> dict:
    """Pooled pairwise agreement with CI, per labeler figures, reliability and gold."""
    return service.summary(db=db, filters=_filters(q))


@router.get("/api/v1/agreement/pairs", response_model=AgreementPairs)
def agreement_pairs(db: DbSession, _: Staff, q: Params) -> dict:
    """Agreement of every two labelers who ranked the same candidate sets."""
    return service.pairs(db=db, filters=_filters(q))


@router.get("/api/v1/agreement/trends", response_model=AgreementTrends)
def agreement_trends(db: DbSession, _: Staff, q: Params) -> dict:
    """Weekly agreement (all, training, held-out), volume and gold accuracy."""
    return service.trends(db=db, filters=_filters(q))
