"""Which model versions a campaign compares, and which prompts each of them trained on.

A campaign may only use test-split prompts that no compared version trained on. Two
guarantees, each enough on its own for prompts imported the usual way:
1. the split: prompts are split train/valid/test by end-user id at import
   (app/prompts), so a test prompt's user has no prompt in the training split;
2. the versions' data: every dataset snapshot that a version, or any version it learned
   from (its parents; for a policy also the reward model its PPO job used), was trained on
   is re-read from its manifest's `reproduce` filters with the id cutoff pinned
   (`source.max_id`), which gives back exactly the rows the snapshot held, and every
   prompt id in them is excluded. A manifest that lists `prompt_ids` is read as is.
   One exception: a policy's PPO stage reads its `prompts` snapshot's train rows to roll
   out and its valid rows to choose the step it keeps, and only answers its test rows once
   to measure the kept policy (training/ppo.py). Those test rows did not train it, and
   stay eligible; unless the stage rolled out on them (`prompt_split` all or test).
"""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.exports.models import DatasetSnapshot
from app.jobs.models import Job
from app.registry.models import ModelVersionSnapshot

CANDIDATE_KINDS = ("policy",)
BASELINE_KINDS = ("policy", "sft", "base")
_BATCH = 5000


class ProvenanceError(ValueError):
    """A version or snapshot that cannot be used; the message says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Version:
    """What a campaign needs of a model version."""

    id: int
    kind: str
    name: str
    path: str
    parent_id: int | None
    snapshot_ids: list[int] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    job_id: int | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def measured_only(self) -> frozenset[str]:
        """The splits of a `prompts` snapshot this version was only measured on."""
        if self.kind != "policy" or self.config.get("prompt_split", "train") in ("all", "test"):
            return frozenset()
        return frozenset({"test"})


def _of(db: Session, row: Any) -> Version:
    ids = getattr(row, "snapshot_ids", None)
    if ids is None:  # a ModelVersion row: its snapshots are in the link table
        ids = db.scalars(select(ModelVersionSnapshot.snapshot_id)
                         .where(ModelVersionSnapshot.model_version_id == row.id)).all()
    return Version(id=row.id, kind=str(row.kind), name=row.name or f"version {row.id}",
                   path=row.path or "", parent_id=row.parent_id,
                   snapshot_ids=[int(i) for i in ids], metrics=dict(row.metrics or {}),
                   job_id=getattr(row, "job_id", None), config=dict(row.config or {}))


def get_version(*, db: Session, version_id: int) -> Version:
    """A model version (through the registry's service when there is one); 404 if none."""
    from app.registry import service as registry

    try:
        row = registry.get_version(db=db, version_id=version_id)
    except DomainError as exc:  # the registry's own "not found"
        if exc.status != 404:
            raise
        row = None
    if row is None:
        raise ProvenanceError(f"There is no model version {version_id}.", 404)
    return _of(db, row)


def _sources(db: Session, version: Version) -> list[int]:
    """The versions this one learned from: its parent and, for a policy, the reward model
    its PPO job optimised against (recorded in the job's inputs)."""
    found = [version.parent_id] if version.parent_id is not None else []
    job = db.get(Job, version.job_id) if version.job_id is not None else None
    reward = (job.inputs or {}).get("reward_model") if job is not None else None
    if isinstance(reward, dict) and isinstance(reward.get("id"), int):
        found.append(reward["id"])
    return found


def lineage_snapshots(*, db: Session, version: Version) -> dict[int, frozenset[str]]:
    """The snapshot ids of a version and of every version it learned from (the SFT under
    a policy, the reward model it was optimised against, and theirs), each with the splits
    of it that only measured them (a snapshot two versions share: what both only measured)."""
    found: dict[int, frozenset[str]] = {}

    def add(v: Version) -> None:
        for sid in v.snapshot_ids:
            found[sid] = found[sid] & v.measured_only() if sid in found else v.measured_only()

    add(version)
    seen = {version.id}
    todo = _sources(db, version)
    while todo:
        source = todo.pop()
        if source in seen:
            continue
        seen.add(source)
        try:
            ancestor = get_version(db=db, version_id=source)
        except ProvenanceError:
            continue  # a deleted version: its data is no longer in any snapshot row either
        add(ancestor)
        todo.extend(_sources(db, ancestor))
    return found


def snapshot_prompt_ids(*, db: Session, snapshot_id: int,
                        measured_only: frozenset[str] = frozenset()) -> set[int]:
    """Every prompt id in a snapshot, from its manifest; in a `prompts` snapshot, not those of
    rows in the `measured_only` splits."""
    snapshot = db.get(DatasetSnapshot, snapshot_id)
    if snapshot is None or snapshot.state != "done" or not snapshot.manifest:
        raise ProvenanceError(
            f"Snapshot {snapshot_id}, which a compared version was trained on, has no "
            "manifest, so the prompts it held cannot be excluded.", 409)
    if snapshot.kind != "prompts":
        measured_only = frozenset()
    if isinstance(snapshot.manifest.get("prompt_ids"), list) and not measured_only:
        return {int(i) for i in snapshot.manifest["prompt_ids"]}
    return _replayed_prompt_ids(db, snapshot, measured_only)


def _replayed_prompt_ids(db: Session, snapshot: DatasetSnapshot,
                         measured_only: frozenset[str]) -> set[int]:
    """The snapshot's prompt ids found by running its export again with the filters and the
    id cutoff its manifest kept, leaving out rows in the `measured_only` splits."""
    from app.exports import sources
    from app.exports.schemas import ExportFilters

    manifest = snapshot.manifest
    again = dict(manifest.get("reproduce", {}).get("filters", snapshot.filters))
    again.setdefault("max_id", manifest.get("source", {}).get("max_id"))
    filters = ExportFilters.model_validate(again)
    plan = sources.Plan(kind=snapshot.kind, filters=filters, cutoff=int(filters.max_id or 0),
                        labelers=set(filters.labeler_ids) if filters.labeler_ids else None)
    ids: set[int] = set()
    for rows in sources.batches(db=db, plan=plan, stats=sources.Stats(), size=_BATCH):
        for row in (rows.rows() if hasattr(rows, "rows") else rows):
            if row.get("prompt_id") is not None and row.get("split") not in measured_only:
                ids.add(int(row["prompt_id"]))
    return ids


def trained_prompt_ids(*, db: Session, versions: list[Version]) -> tuple[set[int], list[int]]:
    """(prompt ids any of these versions or their ancestors trained on, the snapshots read)."""
    snapshots: dict[int, frozenset[str]] = {}
    for version in versions:
        for sid, measured in lineage_snapshots(db=db, version=version).items():
            snapshots[sid] = snapshots[sid] & measured if sid in snapshots else measured
    prompts: set[int] = set()
    for sid, measured in sorted(snapshots.items()):
        prompts |= snapshot_prompt_ids(db=db, snapshot_id=sid, measured_only=measured)
    return prompts, sorted(snapshots)
