"""Per-labeler pairwise agreement, for the `min_agreement` export filter.

The paper's measure (72.6%), as DESIGN.md's agreement summary defines it: over every task,
every two labelers who ranked it, every candidate pair tied by neither, the share ordered
the same way; a labeler's figure pools the pairs they took part in. The agreement domain's
summary is used when present, so the export and the agreement page agree; the local
computation (streaming rankings in task order) stands in where it is not installed.
"""

from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.labeling.models import Ranking


def per_labeler_agreement(*, db: Session) -> dict[int, tuple[float, int]]:
    """{labeler id: (pairwise agreement, compared pairs)} over every rank task."""
    try:
        from app.agreement import service as agreement
    except ImportError:
        return local_agreement(db=db)
    table = agreement.summary(db=db, filters=agreement.make_filters(kind="rank"))
    return {
        int(row["user_id"]): (float(row["pairwise_agreement"]), int(row["n_comparisons"]))
        for row in table["per_labeler"]
        if row.get("pairwise_agreement") is not None and row.get("n_comparisons")
    }


def local_agreement(*, db: Session) -> dict[int, tuple[float, int]]:
    """The same figures computed here, one task's rankings in memory at a time."""
    agree: Counter[int] = Counter()
    total: Counter[int] = Counter()
    stmt = (
        select(Ranking.task_id, Ranking.user_id, Ranking.groups)
        .order_by(Ranking.task_id, Ranking.id)
        .execution_options(yield_per=5000)
    )
    task: Any = None
    same_task: list[tuple[int, Sequence[Sequence[int]]]] = []
    for task_id, user_id, groups in db.execute(stmt):
        if task_id != task:
            _score(same_task, agree, total)
            task, same_task = task_id, []
        same_task.append((user_id, groups))
    _score(same_task, agree, total)
    return {uid: (agree[uid] / n, n) for uid, n in total.items() if n}


def _score(
    rankings: list[tuple[int, Sequence[Sequence[int]]]], agree: Counter[int], total: Counter[int]
) -> None:
    ranked = [(uid, {cid: g for g, group in enumerate(groups) for cid in group})
              for uid, groups in rankings]
    for (ua, ra), (ub, rb) in combinations(ranked, 2):
        if ua == ub:
            continue
        for x, y in combinations(sorted(ra.keys() & rb.keys()), 2):
            da, db_ = ra[x] - ra[y], rb[x] - rb[y]
            if da == 0 or db_ == 0:
                continue  # a tie by either labeler says nothing about this pair
            same = (da > 0) == (db_ > 0)
            for uid in (ua, ub):
                total[uid] += 1
                agree[uid] += same
