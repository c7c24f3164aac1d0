"""Per-labeler pairwise agreement, for the `min_agreement` export filter.

The paper's measure (72.6%), as DESIGN.md's agreement summary defines it: over every task,
every two labelers who ranked it, every candidate pair tied by neither, the share ordered
the same way; a labeler's figure pools the pairs they took part in. It is the agreement
domain's summary, so the export and the agreement page agree.
"""

from sqlalchemy.orm import Session

from app.agreement import service as agreement


def per_labeler_agreement(*, db: Session) -> dict[int, tuple[float, int]]:
    """{labeler id: (pairwise agreement, compared pairs)} over every rank task."""
    table = agreement.summary(db=db, filters=agreement.make_filters(kind="rank"))
    return {
        int(row["user_id"]): (float(row["pairwise_agreement"]), int(row["n_comparisons"]))
        for row in table["per_labeler"]
        if row.get("pairwise_agreement") is not None and row.get("n_comparisons")
    }
