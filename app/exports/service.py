"""Dataset snapshots: validate a request, build its files atomically, list and serve them.

A snapshot is immutable: its files are written into a fresh temporary directory under
the exports directory and renamed into place when complete, and nothing ever writes to a
finished snapshot. Asking again makes a new snapshot (with the same data-file hash when
the source rows are the same).
"""

import gc
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import store
from app.auth.models import User
from app.config import get_settings
from app.db import utcnow
from app.errors import DomainError
from app.exports import sources
from app.exports.agreement import per_labeler_agreement
from app.exports.models import DatasetSnapshot
from app.exports.schemas import ExportCreate, ExportFilters
from app.exports.writers import Writer, open_writer, write_json
from app.registry.models import ModelVersion
from training.records import RECORD_TYPES, SCHEMA_VERSION

BATCH_ROWS = 1000  # source rows per read batch (a Parquet row group each)
INLINE_MAX_SOURCE_ROWS = 5000  # larger requests from the web run as a Celery job
MANIFEST = "manifest.json"

_LABELER_FILTERS = {"labeler_ids", "held_out", "min_agreement"}
_COMMON = {"split", "since", "until", "task_kind", "max_id"}
APPLIES: dict[str, frozenset[str]] = {
    "sft": frozenset(_COMMON | _LABELER_FILTERS | {"include_rejected"}),
    "rankings": frozenset(_COMMON | _LABELER_FILTERS | {"model_version_id"}),
    "comparisons": frozenset(_COMMON | _LABELER_FILTERS | {"model_version_id"}),
    "grouped": frozenset(_COMMON | _LABELER_FILTERS | {"model_version_id"}),
    "ratings": frozenset(_COMMON | _LABELER_FILTERS | {"model_version_id"}),
    "prompts": frozenset(_COMMON | {"include_rejected"}),
}

Progress = Callable[[int, int], None]  # (source rows read, source rows expected)


class ExportError(DomainError, ValueError):
    """A request that cannot be exported; the message says what to change."""

    status = 422


class NotFound(DomainError, LookupError):
    """No snapshot with this id."""

    status = 404


class NotReady(DomainError, RuntimeError):
    """The snapshot has no files to serve (still building, failed, or removed)."""

    status = 409


@dataclass
class BuildResult:
    """What write_files produced: the snapshot directory and its manifest."""

    directory: Path
    manifest: dict[str, Any]
    location: str = ""  # its store URL, where there is a store (the directory then moved)


def validate(*, db: Session, request: ExportCreate) -> None:
    """Refuse filters that do not apply to the kind, or that name unknown rows."""
    given = request.filters.given()
    bad = sorted(set(given) - APPLIES[request.kind])
    if bad:
        allowed = ", ".join(sorted(APPLIES[request.kind]))
        raise ExportError(f"filter(s) {', '.join(bad)} do not apply to {request.kind} exports "
                          f"(they take: {allowed})")
    if request.chat and request.kind != "sft":
        raise ExportError("the chat variant exists only for sft exports")
    ids = request.filters.labeler_ids
    if ids:
        found = set(db.scalars(select(User.id).where(User.id.in_(ids))))
        missing = sorted(set(ids) - found)
        if missing:
            raise ExportError(f"unknown labeler id(s): {', '.join(map(str, missing))}")
    version = request.filters.model_version_id
    if version is not None and db.get(ModelVersion, version) is None:
        raise ExportError(f"unknown model version id: {version}")


def create_snapshot(*, db: Session, user: User | None, request: ExportCreate) -> DatasetSnapshot:
    """Validate the request and record a pending snapshot for it."""
    validate(db=db, request=request)
    snapshot = DatasetSnapshot(
        kind=request.kind, format=request.format, filters=request.filters.given(),
        options={"chat": True} if request.chat else {}, state="pending", progress=0.0,
        rows=0, manifest={}, created_by_id=user.id if user else None,
    )
    db.add(snapshot)
    db.flush()
    return snapshot


def request_export(*, db: Session, user: User, request: ExportCreate) -> DatasetSnapshot:
    """Create a snapshot and build it now if small; a large one stays pending for a worker."""
    snapshot = create_snapshot(db=db, user=user, request=request)
    plan, _ = _plan(db, snapshot)
    if sources.count(db=db, plan=plan) > INLINE_MAX_SOURCE_ROWS:
        # A job recorded in this transaction: a worker builds it, and the jobs' reaper and
        # sweep see to it if the worker dies or the broker was down (app/jobs).
        from app.jobs import service as jobs

        jobs.submit(db=db, kind="export_snapshot", config={"snapshot_id": snapshot.id},
                    user=user)
        return snapshot
    try:
        build(db=db, snapshot=snapshot)
    except Exception as exc:  # noqa: BLE001 - the row keeps the reason; nothing half-written
        mark_failed(db=db, snapshot=snapshot, error=str(exc))
    return snapshot


def list_snapshots(*, db: Session, limit: int = 200) -> list[DatasetSnapshot]:
    """The newest snapshots first."""
    stmt = select(DatasetSnapshot).order_by(DatasetSnapshot.id.desc()).limit(limit)
    return list(db.scalars(stmt))


def stored_paths(*, db: Session) -> set[str]:
    """The paths of every snapshot published to a store (what the store's sweep must keep)."""
    rows = db.scalars(select(DatasetSnapshot.path).where(DatasetSnapshot.path.is_not(None)))
    return {p for p in rows if p and store.is_url(p)}


def get_snapshot(*, db: Session, snapshot_id: int) -> DatasetSnapshot:
    """One snapshot, or NotFound."""
    snapshot = db.get(DatasetSnapshot, snapshot_id)
    if snapshot is None:
        raise NotFound(f"no snapshot {snapshot_id}")
    return snapshot


def file_for(*, db: Session, snapshot_id: int, which: str = "data") -> Path:
    """The data file (or manifest.json) of a finished snapshot."""
    snapshot = get_snapshot(db=db, snapshot_id=snapshot_id)
    if snapshot.state != "done" or not snapshot.path:
        raise NotReady(f"snapshot {snapshot_id} is {snapshot.state}; it has no files yet")
    name = MANIFEST if which == "manifest" else snapshot.manifest["files"][0]["name"]
    try:
        path = Path(store.localize(snapshot.path)) / Path(name).name
    except store.StoreError as exc:
        raise NotReady(f"the files of snapshot {snapshot_id} cannot be read: {exc}") from exc
    if not path.is_file():
        raise NotReady(f"the files of snapshot {snapshot_id} are no longer on disk")
    return path


def build(*, db: Session, snapshot: DatasetSnapshot, out_dir: Path | None = None,
          on_progress: Progress | None = None) -> DatasetSnapshot:
    """Write the snapshot's files and record them on its row (one session)."""
    snapshot.state = "running"
    db.flush()
    result = write_files(db=db, snapshot=snapshot, out_dir=out_dir, on_progress=on_progress)
    record_result(db=db, snapshot=snapshot, result=result)
    return snapshot


def claim(*, db: Session, snapshot_id: int) -> DatasetSnapshot | None:
    """Mark a snapshot running for a worker; None when it is gone or already done."""
    snapshot = db.get(DatasetSnapshot, snapshot_id)
    if snapshot is None or snapshot.state == "done":
        return None
    snapshot.state, snapshot.progress, snapshot.error = "running", 0.0, None
    db.flush()
    return snapshot


def set_progress(*, db: Session, snapshot_id: int, progress: float) -> None:
    """Store a running snapshot's progress (0..1)."""
    snapshot = db.get(DatasetSnapshot, snapshot_id)
    if snapshot is not None and snapshot.state == "running":
        snapshot.progress = max(0.0, min(1.0, progress))
        db.flush()


def record_result(*, db: Session, snapshot: DatasetSnapshot, result: BuildResult) -> None:
    """Mark the snapshot done with its directory, row count, hash and manifest."""
    data = result.manifest["files"][0]
    snapshot.state, snapshot.progress, snapshot.error = "done", 1.0, None
    snapshot.path = result.location or str(result.directory)
    snapshot.rows, snapshot.sha256 = data["rows"], data["sha256"]
    snapshot.manifest = result.manifest
    snapshot.finished_at = utcnow()
    db.flush()


def mark_failed(*, db: Session, snapshot: DatasetSnapshot, error: str) -> None:
    """Mark the snapshot failed with a reason; it can be requested again."""
    snapshot.state, snapshot.error, snapshot.finished_at = "failed", error[:2000], utcnow()
    db.flush()


def write_files(*, db: Session, snapshot: DatasetSnapshot, out_dir: Path | None = None,
                on_progress: Progress | None = None) -> BuildResult:
    """Stream the rows into a temp directory, add manifest.json, rename it into place."""
    final = _target(snapshot, out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{snapshot.id}-", dir=final.parent))
    writer: Writer | None = None
    try:
        plan, resolved = _plan(db, snapshot)
        expected = sources.count(db=db, plan=plan)
        stats = sources.Stats()
        writer = open_writer(snapshot.format, tmp, snapshot.kind, plan.chat)
        with _cyclic_gc_paused():
            for rows in sources.batches(db=db, plan=plan, stats=stats, size=BATCH_ROWS):
                writer.write(rows)
                stats.rows += len(rows)
                if on_progress:
                    on_progress(stats.source_rows, expected)
        n, digest, size = writer.close()
        writer = None
        manifest = _manifest(snapshot, plan, resolved, stats,
                             {"name": f"{snapshot.kind}.{snapshot.format}", "rows": n,
                              "bytes": size, "sha256": digest})
        write_json(tmp / MANIFEST, manifest)
        if final.exists():
            raise ExportError(f"{final} appeared while exporting; snapshots never overwrite")
        os.rename(tmp, final)
    except BaseException:
        if writer is not None:
            _close_quietly(writer)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shared = store.current() if out_dir is None else None
    location = _publish(shared, final) if shared is not None else ""
    return BuildResult(directory=final, manifest=manifest, location=location)


def _publish(shared: store.Store, final: Path) -> str:
    """Put a built snapshot in the store (the stages that read it may run on other
    machines); one the store refuses is removed here too, so it is nowhere half-kept."""
    try:
        return shared.publish(final, "exports", final.name).url
    except store.StoreError:
        shutil.rmtree(final, ignore_errors=True)
        raise


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cycle collector while rows stream through.

    Every batch allocates tens of thousands of rows, dicts and strings, so the collector
    kept running full passes over everything alive: a third of a 1M-row export's CPU.
    Batch objects hold no reference cycles (reference counting frees them), so memory
    stays at one batch; anything cyclic is collected once at the end.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect()


def _target(snapshot: DatasetSnapshot, out_dir: Path | None) -> Path:
    if out_dir is not None:
        final = Path(out_dir).resolve()
        if final.exists():
            raise ExportError(f"{final} already exists; an export never overwrites files")
        return final
    # The random part keeps names unique even where a rolled-back id is handed out again.
    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    name = f"{snapshot.id:06d}-{snapshot.kind}-{stamp}-{secrets.token_hex(3)}"
    return get_settings().exports_dir.resolve() / name


def _plan(db: Session, snapshot: DatasetSnapshot) -> tuple[sources.Plan, dict[str, Any]]:
    """The read plan, resolving labelers by agreement now (and saying whom it chose)."""
    filters = ExportFilters.model_validate(snapshot.filters)
    labelers = set(filters.labeler_ids) if filters.labeler_ids else None
    resolved: dict[str, Any] = {}
    if filters.min_agreement is not None:
        scores = per_labeler_agreement(db=db)
        passing = {uid for uid, (share, _) in scores.items() if share >= filters.min_agreement}
        labelers = passing if labelers is None else labelers & passing
        resolved["labeler_ids"] = sorted(labelers)
        resolved["agreement"] = {str(uid): {"pairwise_agreement": round(share, 6), "pairs": n}
                                 for uid, (share, n) in sorted(scores.items())}
    plan = sources.Plan(
        kind=snapshot.kind, filters=filters, labelers=labelers,
        cutoff=sources.cutoff_id(db=db, kind=snapshot.kind, filters=filters),
        chat=bool(snapshot.options.get("chat")),
    )
    return plan, resolved


def _manifest(snapshot: DatasetSnapshot, plan: sources.Plan, resolved: dict[str, Any],
              stats: sources.Stats, data_file: dict[str, Any]) -> dict[str, Any]:
    # The same rows again: these filters with the cutoff pinned and labelers resolved.
    again = {**snapshot.filters, "max_id": plan.cutoff}
    if "labeler_ids" in resolved:
        again.pop("min_agreement", None)
        again["labeler_ids"] = resolved["labeler_ids"]
    manifest: dict[str, Any] = {
        "snapshot_id": snapshot.id,
        "kind": snapshot.kind,
        "format": snapshot.format,
        "chat": plan.chat,
        "record": RECORD_TYPES[snapshot.kind].__name__,
        "schema_version": SCHEMA_VERSION,
        "filters": snapshot.filters,
        "resolved": resolved,
        "created_at": utcnow().isoformat(),
        "created_by_id": snapshot.created_by_id,
        "files": [data_file],
        "rows": data_file["rows"],
        "source": {
            "table": sources.SOURCE[snapshot.kind].__tablename__,
            "rows_read": stats.source_rows,
            "max_id": plan.cutoff,
            "highest_ids": dict(sorted(stats.highest.items())),
            "skipped_missing_candidates": stats.skipped,
        },
        "reproduce": {"kind": snapshot.kind, "format": snapshot.format, "chat": plan.chat,
                      "filters": again},
    }
    if snapshot.kind == "comparisons":
        manifest["source"]["tied_pairs"] = stats.tied_pairs
    return manifest


def _close_quietly(writer: Writer) -> None:
    try:
        writer.close()
    except Exception:  # noqa: BLE001, S110 - the directory is being thrown away anyway
        pass
