"""Source queries: the filtered rows of each export kind, streamed batch by batch as records.

Every row is built with a training.records class, so the exporter and the trainer read
and write one shape. Reads use yield_per (a server-side cursor on PostgreSQL): memory
holds one batch, whatever the table size. Rows are ordered by id (grouped: by prompt, then
ranking id) and bounded by a cutoff id, so the same request gives the same rows.
"""

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from math import comb
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Select,
    Text,
    any_,
    bindparam,
    cast,
    func,
    null,
    or_,
    select,
)
from sqlalchemy.orm import Session

from app.auth.models import User
from app.exports.schemas import ExportFilters
from app.exports.writers import Rows
from app.labeling.models import Demonstration, Ranking, Rating, WrittenPrompt
from app.prompts.models import Candidate, Prompt
from app.queue.models import Task
from app.registry.models import ModelVersion
from training.records import (
    ComparisonRecord,
    PromptRecord,
    RankingRecord,
    RatingRecord,
    Record,
    SFTRecord,
    comparisons_from_groups,
    comparisons_from_ranking,
)

SOURCE: dict[str, Any] = {
    "sft": Demonstration, "rankings": Ranking, "comparisons": Ranking, "grouped": Ranking,
    "ratings": Rating, "prompts": Prompt,
}


@dataclass
class Plan:
    """What to read: kind, filters, the resolved labeler set and the id cutoff."""

    kind: str
    filters: ExportFilters
    cutoff: int
    labelers: set[int] | None = None  # None: any labeler
    chat: bool = False


@dataclass
class Stats:
    """What a read saw: source rows, rows written, the highest ids included, skips."""

    source_rows: int = 0
    rows: int = 0
    highest: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # rankings naming a candidate that no longer exists
    tied_pairs: int = 0  # comparisons only: pairs a tie removed from Σ C(K,2)

    def see(self, table: str, row_id: int | None) -> None:
        """Remember the highest id of `table` that went into the snapshot."""
        if row_id is not None and row_id > self.highest.get(table, 0):
            self.highest[table] = row_id


def cutoff_id(*, db: Session, kind: str, filters: ExportFilters) -> int:
    """The highest source id this snapshot may include (the request's max_id, or now's)."""
    if filters.max_id is not None:
        return filters.max_id
    return db.scalar(select(func.max(SOURCE[kind].id))) or 0


def count(*, db: Session, plan: Plan) -> int:
    """Source rows matching the plan (rankings for comparisons/grouped), for progress."""
    model = SOURCE[plan.kind]
    stmt = select(model.id)
    if plan.kind in ("rankings", "comparisons", "grouped", "sft"):
        stmt = stmt.join(Prompt, Prompt.id == model.prompt_id)
    elif plan.kind == "ratings":
        stmt = stmt.join(Candidate, Candidate.id == Rating.candidate_id).join(
            Prompt, Prompt.id == Candidate.prompt_id
        )
        if plan.filters.model_version_id is not None:
            stmt = stmt.where(Candidate.model_version_id == plan.filters.model_version_id)
    stmt = _filtered(stmt, model, plan)
    return db.scalar(select(func.count()).select_from(stmt.subquery())) or 0


def batches(*, db: Session, plan: Plan, stats: Stats, size: int) -> Iterator[Rows]:
    """Rows of the snapshot (dicts, or a ComparisonBatch), one batch per batch of source rows."""
    reader = {
        "sft": _sft, "ratings": _ratings, "prompts": _prompts,
        "rankings": _rankings, "comparisons": _rankings, "grouped": _rankings,
    }[plan.kind]
    yield from reader(db, plan, stats, size)


def fields(record: Record) -> dict[str, Any]:
    """The record as a dict: `to_dict()` without its deep copy (records are flat)."""
    return vars(record)


_COMPARISON_KEYS = [f.name for f in dataclasses.fields(ComparisonRecord)]
_encode_str = json.encoder.encode_basestring  # what JSONEncoder(ensure_ascii=False) uses
_encode = json.JSONEncoder(ensure_ascii=False).encode


def _json_id(value: int | None) -> str:
    return "null" if value is None else str(int(value))


class ComparisonBatch:
    """The comparisons of a batch of rankings, kept per ranking until written.

    A ranking of K candidates gives up to K(K-1)/2 rows repeating its prompt and texts;
    `jsonl()` escapes each text once per ranking instead of once per row, and no
    per-row record or dict is built. `rows()` gives the same rows as dicts (Parquet).
    """

    def __init__(self, rankings: list[tuple[RankingRecord, list[tuple[int, int]]]]) -> None:
        self.rankings = rankings

    def __len__(self) -> int:
        return sum(len(pairs) for _, pairs in self.rankings)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per comparison, as ComparisonRecord's fields."""
        return [fields(c) for rec, _ in self.rankings for c in comparisons_from_ranking(rec)]

    def jsonl(self) -> str:
        """The rows as JSON lines, byte for byte what json.dumps gives for rows()."""
        if _COMPARISON_KEYS != ["prompt", "chosen", "rejected", "prompt_id", "ranking_id",
                                "labeler_id"]:
            return "".join(_encode(r) + "\n" for r in self.rows())  # the record changed shape
        lines: list[str] = []
        for rec, pairs in self.rankings:
            text = {c["id"]: _encode_str(c["text"]) for c in rec.candidates}
            head = '{"prompt": ' + _encode_str(rec.prompt) + ', "chosen": '
            tail = (f', "prompt_id": {_json_id(rec.prompt_id)}, "ranking_id": '
                    f'{_json_id(rec.ranking_id)}, "labeler_id": {_json_id(rec.labeler_id)}}}\n')
            lines.extend([head + text[w] + ', "rejected": ' + text[loser] + tail
                          for w, loser in pairs])
        return "".join(lines)


# --------------------------------------------------------------------------- filtering


def _filtered(stmt: Select, model: Any, plan: Plan) -> Select:  # type: ignore[type-arg]
    f = plan.filters
    stmt = stmt.where(model.id <= plan.cutoff)
    if f.split is not None:
        stmt = stmt.where(Prompt.split == f.split)
    if f.since is not None:
        stmt = stmt.where(model.created_at >= f.since)
    if f.until is not None:
        stmt = stmt.where(model.created_at < f.until)
    if f.task_kind is not None:
        if model is Prompt:
            stmt = stmt.where(Prompt.id.in_(select(Task.prompt_id).where(Task.kind == f.task_kind)))
        else:
            stmt = stmt.where(model.task_id.in_(select(Task.id).where(Task.kind == f.task_kind)))
    if model in (Prompt, Demonstration) and not f.include_rejected:
        # What a reviewer rejected stays out unless asked for.
        if model is Prompt:
            stmt = stmt.where(Prompt.id.not_in(
                select(WrittenPrompt.prompt_id).where(WrittenPrompt.review == "rejected")))
        else:
            stmt = stmt.where(or_(Demonstration.review.is_(None),
                                  Demonstration.review != "rejected"))
    if model is Prompt:
        return stmt
    if plan.labelers is not None:
        stmt = stmt.where(model.user_id.in_(sorted(plan.labelers)))
    if f.held_out is not None:
        stmt = stmt.where(model.user_id.in_(select(User.id).where(User.held_out.is_(f.held_out))))
    return stmt


def _stream(db: Session, stmt: Select, size: int) -> Iterator[Sequence[Any]]:  # type: ignore[type-arg]
    # yield_per streams with a server-side cursor on PostgreSQL, fetchmany on SQLite. Rows
    # go through the session's Connection: plain rows, without the ORM's per-row work.
    yield from db.connection().execute(stmt.execution_options(yield_per=size)).partitions()


# --------------------------------------------------------------------------- kinds


def _sft(db: Session, plan: Plan, stats: Stats, size: int) -> Iterator[list[dict[str, Any]]]:
    stmt = select(Demonstration.id, Demonstration.user_id, Demonstration.text, Prompt.id,
                  Prompt.text).join(Prompt, Prompt.id == Demonstration.prompt_id)
    stmt = _filtered(stmt, Demonstration, plan).order_by(Demonstration.id)
    for part in _stream(db, stmt, size):
        rows = []
        for demo_id, user_id, text, prompt_id, prompt in part:
            rec = SFTRecord(prompt=prompt, completion=text, prompt_id=prompt_id,
                            demonstration_id=demo_id, labeler_id=user_id)
            ids = {"prompt_id": prompt_id, "demonstration_id": demo_id, "labeler_id": user_id}
            rows.append({**rec.to_messages(), **ids} if plan.chat else fields(rec))
            stats.see("demonstrations", demo_id)
            stats.see("prompts", prompt_id)
        stats.source_rows += len(part)
        yield rows


def _prompts(db: Session, plan: Plan, stats: Stats, size: int) -> Iterator[list[dict[str, Any]]]:
    stmt = select(Prompt.id, Prompt.text, Prompt.split, Prompt.category, Prompt.end_user_id)
    stmt = _filtered(stmt, Prompt, plan).order_by(Prompt.id)
    for part in _stream(db, stmt, size):
        rows = []
        for prompt_id, text, split, category, end_user_id in part:
            rec = PromptRecord(prompt_id=prompt_id, text=text, split=str(split.value),
                               category=category, end_user_id=end_user_id)
            rows.append(fields(rec))
            stats.see("prompts", prompt_id)
        stats.source_rows += len(part)
        yield rows


def _ratings(db: Session, plan: Plan, stats: Stats, size: int) -> Iterator[list[dict[str, Any]]]:
    stmt = (
        select(Rating.id, Rating.user_id, Rating.candidate_id, Rating.likert, Rating.flags,
               Rating.comment, Rating.created_at, Candidate.text, Candidate.model,
               ModelVersion.name, Prompt.id, Prompt.text)
        .join(Candidate, Candidate.id == Rating.candidate_id)
        .join(Prompt, Prompt.id == Candidate.prompt_id)
        .outerjoin(ModelVersion, ModelVersion.id == Candidate.model_version_id)
    )
    query = _filtered(stmt, Rating, plan).order_by(Rating.id)
    if plan.filters.model_version_id is not None:
        query = query.where(Candidate.model_version_id == plan.filters.model_version_id)
    for part in _stream(db, query, size):
        rows = []
        for (rid, uid, cid, likert, flags, comment, created, text, model, version, pid,
             prompt) in part:
            rec = RatingRecord(
                rating_id=rid, prompt_id=pid, prompt=prompt, candidate_id=cid, text=text,
                likert=likert, model_version=version or model, flags=list(flags or []),
                comment=comment or None, labeler_id=uid, created_at=created.isoformat(),
            )
            rows.append(fields(rec))
            stats.see("ratings", rid)
            stats.see("candidates", cid)
            stats.see("prompts", pid)
        stats.source_rows += len(part)
        yield rows


def _rankings(db: Session, plan: Plan, stats: Stats, size: int) -> Iterator[Rows]:
    # Only the rankings kind shows the display order: the others skip decoding it.
    shown = Ranking.display_order if plan.kind == "rankings" else null().label("display_order")
    stmt = select(Ranking.id, Ranking.prompt_id, Ranking.user_id, Ranking.groups, shown,
                  Ranking.seconds_spent, Ranking.created_at,
                  Prompt.text).join(Prompt, Prompt.id == Ranking.prompt_id)
    stmt = _filtered(stmt, Ranking, plan)
    # grouped: a prompt's rankings sit together, ready for one batch element each.
    order = (Ranking.prompt_id, Ranking.id) if plan.kind == "grouped" else (Ranking.id,)
    for part in _stream(db, stmt.order_by(*order), size):
        stats.source_rows += len(part)
        records = list(_ranking_records(db, plan, stats, part))
        if plan.kind == "rankings":
            yield [fields(r) for r in records]
        elif plan.kind == "grouped":
            yield [fields(r.to_grouped()) for r in records]
        else:
            batch = ComparisonBatch([(rec, list(comparisons_from_groups(rec.groups)))
                                     for rec in records])
            for rec, pairs in batch.rankings:
                stats.tied_pairs += comb(len(rec.candidates), 2) - len(pairs)
            yield batch


def _ranking_records(
    db: Session, plan: Plan, stats: Stats, part: Sequence[Any]
) -> Iterator[RankingRecord]:
    wanted = {cid for row in part for group in row.groups for cid in group}
    cands = _candidates(db, sorted(wanted))
    ratings = _ranking_ratings(db, [row.id for row in part]) if plan.kind == "rankings" else {}
    version = plan.filters.model_version_id
    for row in part:
        ids = sorted({cid for group in row.groups for cid in group})
        if any(cid not in cands for cid in ids):
            stats.skipped += 1
            continue
        candidates = [cands[cid] for cid in ids]
        if version is not None and all(c["model_version_id"] != version for c in candidates):
            continue
        yield RankingRecord(
            ranking_id=row.id, prompt_id=row.prompt_id, prompt=row.text, candidates=candidates,
            groups=row.groups, display_order=list(row.display_order or []),
            ratings=ratings.get(row.id, {}), labeler_id=row.user_id,
            seconds_spent=float(row.seconds_spent), created_at=row.created_at.isoformat(),
        )
        stats.see("rankings", row.id)
        stats.see("prompts", row.prompt_id)
        stats.see("candidates", ids[-1])


def _candidates(db: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    stmt = select(Candidate.id, Candidate.text, Candidate.model, Candidate.model_version_id)
    # All at once: iterating the result fetches one row per call.
    rows = db.connection().execute(stmt.where(_id_in(db, Candidate.id, ids))).all()
    return {cid: {"id": cid, "text": text, "model": model, "model_version_id": version}
            for cid, text, model, version in rows}


def _id_in(db: Session, column: Any, ids: list[int]) -> Any:
    # One array parameter on PostgreSQL: an IN list of thousands of parameters costs more
    # to compile and send than the rows it fetches. SQLite has no arrays: a plain IN.
    # Sent as one '{1,2,…}' text: psycopg's per-element list dumping cost more than the query.
    if db.get_bind().dialect.name == "postgresql":
        literal = "{" + ",".join(map(str, ids)) + "}"
        return column == any_(cast(bindparam("ids", literal, type_=Text), ARRAY(BigInteger)))
    return column.in_(ids)


def _ranking_ratings(db: Session, ranking_ids: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    stmt = select(Rating.ranking_id, Rating.candidate_id, Rating.likert, Rating.flags,
                  Rating.comment).where(_id_in(db, Rating.ranking_id, ranking_ids))
    for rid, cid, likert, flags, comment in db.execute(stmt.order_by(Rating.id)):
        if rid is None:  # cannot happen: filtered to ranking_ids; tells the type checker
            continue
        out.setdefault(rid, {})[str(cid)] = {
            "likert": likert, "flags": list(flags or []), "comment": comment or None,
        }
    return out
