"""Agreement JSON API: staff only, labelers never see others' figures (the page and CSV are
in pages.py)."""


from fastapi import APIRouter

from app.agreement import pages, service
from app.agreement.schemas import (
    AgreementPairs,
    AgreementParams,
    AgreementSummary,
    AgreementTrends,
)
from app.auth.deps import STAFF, Staff
from app.db import DbSession
from app.templating import add_nav

router = APIRouter()
add_nav("Agreement", "/agreement", STAFF,
        "Inter-annotator agreement and labeler quality, per labeler and over time.")


@router.get("/api/v1/agreement/summary", response_model=AgreementSummary)
def agreement_summary(db: DbSession, _: Staff, q: AgreementParams) -> dict:
    """Pooled pairwise agreement with CI, per labeler figures, reliability and gold."""
    return service.summary(db=db, filters=service.filters_for(query=q))


@router.get("/api/v1/agreement/pairs", response_model=AgreementPairs)
def agreement_pairs(db: DbSession, _: Staff, q: AgreementParams) -> dict:
    """Agreement of every two labelers who ranked the same candidate sets."""
    return service.pairs(db=db, filters=service.filters_for(query=q))


@router.get("/api/v1/agreement/trends", response_model=AgreementTrends)
def agreement_trends(db: DbSession, _: Staff, q: AgreementParams) -> dict:
    """Weekly agreement (all, training, held-out), volume and gold accuracy."""
    return service.trends(db=db, filters=service.filters_for(query=q))


router.include_router(pages.router)
