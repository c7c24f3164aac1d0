"""The registry: immutable model versions, their lineage, and aliases that move.

`register` runs inside the transaction that marks a training job succeeded, so a version
exists if and only if its job succeeded and its directory was complete on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import store
from app.config import get_settings
from app.db import utcnow
from app.jobs.errors import JobError, JobFailed
from app.registry.models import (
    AliasEvent,
    ModelAlias,
    ModelKind,
    ModelVersion,
    ModelVersionSnapshot,
)

if TYPE_CHECKING:
    from app.jobs.kinds import JobContext
    from app.jobs.models import Job

ALIAS_KINDS = ("sft", "rm", "policy")


def get_version(*, db: Session, version_id: int) -> ModelVersion:
    """One version, or a 404."""
    version = db.get(ModelVersion, version_id)
    if version is None:
        raise JobError(f"There is no model version {version_id}.", 404)
    return version


def list_versions(*, db: Session, kind: str | None = None, limit: int = 500) -> list[ModelVersion]:
    """Versions, newest first."""
    if kind is not None and kind not in ModelKind.__members__:
        raise JobError(f"Unknown model kind {kind!r}; kinds: base, sft, rm, policy.", 422)
    stmt = select(ModelVersion).order_by(ModelVersion.id.desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(ModelVersion.kind == kind)
    return list(db.scalars(stmt))


def round_versions(*, db: Session, round_ids: list[int]) -> dict[int, dict[str, ModelVersion]]:
    """The versions each round trained, by kind (the newest where a stage ran twice)."""
    stmt = (select(ModelVersion).where(ModelVersion.round_id.in_(round_ids))
            .order_by(ModelVersion.id))
    out: dict[int, dict[str, ModelVersion]] = {}
    for version in db.scalars(stmt):
        out.setdefault(version.round_id or 0, {})[version.kind] = version
    return out


def snapshot_ids(*, db: Session, version_id: int) -> list[int]:
    """The snapshots a version was trained on."""
    stmt = select(ModelVersionSnapshot.snapshot_id).where(
        ModelVersionSnapshot.model_version_id == version_id)
    return sorted(db.scalars(stmt))


def aliases(*, db: Session) -> dict[int, list[str]]:
    """Alias names by the version they point at."""
    out: dict[int, list[str]] = {}
    for row in db.scalars(select(ModelAlias).order_by(ModelAlias.name)):
        out.setdefault(row.model_version_id, []).append(row.name)
    return out


def alias_target(*, db: Session, alias: str) -> ModelVersion | None:
    """The version an alias points at, if it is set."""
    row = db.get(ModelAlias, alias)
    return db.get(ModelVersion, row.model_version_id) if row else None


def _locked_alias(db: Session, alias: str, version: ModelVersion) -> tuple[ModelAlias, int | None]:
    """The alias's row, locked until the commit, and the version it pointed at before (None:
    unset until now, the row created pointing at `version`).

    Two promotes at once (a double click) used to read the alias, both decide to move it,
    then both insert it (one 500 on the primary key) or both move it, the second from the
    version to itself: rollback then went nowhere. The INSERT ... ON CONFLICT waits for a
    concurrent insert of the alias to commit; the row lock orders every later move."""
    conn = db.connection()
    build = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    created = conn.execute(build(ModelAlias).values(
        name=alias, model_version_id=version.id, updated_at=utcnow(),
    ).on_conflict_do_nothing().returning(ModelAlias.name)).scalar()
    row = db.scalars(select(ModelAlias).where(ModelAlias.name == alias).with_for_update()
                     .execution_options(populate_existing=True)).one()
    return row, None if created else row.model_version_id


def _move(db: Session, row: ModelAlias, before: int | None, version: ModelVersion,
          user_id: int | None, action: str) -> AliasEvent:
    row.model_version_id, row.updated_by_id, row.updated_at = version.id, user_id, utcnow()
    event = AliasEvent(alias=row.name, from_version_id=before, to_version_id=version.id,
                       action=action, user_id=user_id)
    db.add(event)
    db.flush()
    return event


def move_alias(*, db: Session, alias: str, version: ModelVersion, user_id: int | None,
               action: str) -> AliasEvent:
    """Point the alias at the version and keep the move in the history."""
    row, before = _locked_alias(db, alias, version)
    return _move(db, row, before, version, user_id, action)


def promote(*, db: Session, version_id: int, user_id: int | None) -> ModelVersion:
    """Move `<kind>:active` to this version (a base model has no alias to move)."""
    version = get_version(db=db, version_id=version_id)
    if version.kind not in ALIAS_KINDS:
        # 409, as for a version already active: the request is well formed, the version's
        # kind is what refuses it.
        raise JobError(f"Version {version_id} is a {version.kind} model; only sft, rm and "
                       "policy versions are promoted.", 409)
    row, before = _locked_alias(db, f"{version.kind}:active", version)
    if before == version.id:  # also the loser of a double click, once the winner committed
        raise JobError(f"Version {version_id} is already {version.kind}:active.", 409)
    _move(db, row, before, version, user_id, "promote")
    return version


def rollback(*, db: Session, kind: str, user_id: int | None) -> ModelVersion:
    """Move `<kind>:active` back to where it pointed before its last move."""
    if kind not in ALIAS_KINDS:
        raise JobError(f"Unknown kind {kind!r}: roll back one of {', '.join(ALIAS_KINDS)}.", 422)
    alias = f"{kind}:active"
    # Locked first, so the last move read below is the last one (two rollbacks at once
    # would both undo the same move).
    row = db.scalars(select(ModelAlias).where(ModelAlias.name == alias).with_for_update()
                     .execution_options(populate_existing=True)).first()
    last = db.scalars(select(AliasEvent).where(AliasEvent.alias == alias)
                      .order_by(AliasEvent.id.desc()).limit(1)).first()
    if row is None or last is None or last.from_version_id is None:
        raise JobError(f"{alias} has no earlier version to roll back to.", 409)
    version = get_version(db=db, version_id=last.from_version_id)
    _move(db, row, row.model_version_id, version, user_id, "rollback")
    return version


def history(*, db: Session, alias: str | None = None, limit: int = 200) -> list[AliasEvent]:
    """Alias moves, newest first."""
    stmt = select(AliasEvent).order_by(AliasEvent.id.desc()).limit(limit)
    if alias:
        stmt = stmt.where(AliasEvent.alias == alias)
    return list(db.scalars(stmt))


def lineage(*, db: Session, version_id: int) -> dict[str, Any]:
    """The version's ancestors back to the base model, and the versions built on it."""
    version = get_version(db=db, version_id=version_id)
    chain: list[ModelVersion] = []
    node: ModelVersion | None = version
    while node is not None:
        chain.append(node)
        node = db.get(ModelVersion, node.parent_id) if node.parent_id else None
    children = list(db.scalars(select(ModelVersion).where(ModelVersion.parent_id == version_id)))
    return {"version": version, "ancestors": chain[1:], "children": children}


def stored_paths(*, db: Session) -> set[str]:
    """The paths of every version kept in a store (what the store's sweep must keep)."""
    return {p for p in db.scalars(select(ModelVersion.path)) if store.is_url(p)}


def describe_dir(path: Path) -> dict[str, Any]:
    """A finished model directory's checksum (over every file) and its manifest's metrics."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return {"path": str(path), "sha256": digest.hexdigest(),
            "metrics": manifest.get("metrics", {}), "config": manifest.get("config", {})}


def publish_dir(path: Path, log: store.Log | None = None) -> dict[str, Any]:
    """describe_dir, and with a store configured the directory published there: the
    version's path is then the store's URL and its checksum the store's."""
    described = describe_dir(path)
    shared = store.current()
    if shared is not None:
        stored = shared.publish(path, "models", path.name, log=log)
        described |= {"path": stored.url, "sha256": stored.sha256}
    return described


def register(*, db: Session, kind: str, job: Job, outputs: dict[str, Any]) -> ModelVersion:
    """Record the version a job produced, with its snapshots (in the job's transaction)."""
    path = outputs["path"]
    shared = store.current()
    if store.is_url(path):
        if shared is None or shared.checksum(path) != outputs.get("sha256"):
            raise RuntimeError(f"{path} is not committed in the store as it was published")
    elif not (Path(path) / "manifest.json").is_file():
        raise RuntimeError(f"{path} is not a finished model directory")
    name = f"{kind}-r{job.round_id}" if job.round_id else f"{kind}-job{job.id}"
    version = ModelVersion(kind=kind, name=name, parent_id=outputs.get("parent_id"),
                           job_id=job.id, round_id=job.round_id, path=str(path),
                           sha256=outputs.get("sha256"), config=outputs.get("config", {}),
                           metrics=outputs.get("metrics", {}), created_by_id=job.created_by_id)
    db.add(version)
    db.flush()
    db.add_all(ModelVersionSnapshot(model_version_id=version.id, snapshot_id=s)
               for s in outputs.get("snapshot_ids", []))
    db.flush()
    return version


def base_model_path() -> tuple[str, bool]:
    """The configured base model (directory or hub id), and whether it is the tiny one."""
    configured = get_settings().base_model
    if configured:
        return configured, False
    shared = store.current()
    if shared is not None:
        return shared.url_for("models", "base-tiny"), True
    return str((get_settings().models_dir / "base-tiny").resolve()), True


def ensure_base(ctx: JobContext) -> dict[str, Any]:
    """The base version, registered on first use (the tiny model is built then; a base
    directory of this machine's is published to the store, where there is one)."""
    configured, tiny = base_model_path()
    path = configured
    shared = store.current()
    if shared is not None and not tiny and not store.is_url(configured):
        path = _base_for_the_store(ctx, shared, configured)
    with ctx.session() as db:
        found = db.scalars(select(ModelVersion).where(ModelVersion.path == path)).first()
        if found is not None:
            return {"id": found.id, "path": found.path, "name": found.name,
                    "sha256": found.sha256}
    described = _tiny_base(ctx, path) if tiny else _describe_base(path)
    try:
        with ctx.session() as db:
            version = ModelVersion(kind="base", name="tiny" if tiny else configured, path=path,
                                   sha256=described["sha256"], config=described["config"],
                                   metrics=described["metrics"])
            db.add(version)
            db.flush()
            return {"id": version.id, "path": path, "name": version.name,
                    "sha256": version.sha256}
    except IntegrityError:  # registered by another job meanwhile
        with ctx.session() as db:
            found = db.scalars(select(ModelVersion).where(ModelVersion.path == path)).one()
            return {"id": found.id, "path": found.path, "name": found.name,
                    "sha256": found.sha256}


def _base_for_the_store(ctx: JobContext, shared: store.Store, configured: str) -> str:
    """Where workers on every machine read a configured base model from: a directory here
    is published to the store once per checksum (no other machine can read this disk); one
    that is not here is read where a machine that has it published it; a hub id stays one."""
    local = Path(configured).expanduser()
    if local.is_dir():
        checksum = store.dir_checksum(local)
        name = f"base-{checksum[:16]}"
        url = shared.url_for("models", name)
        try:
            published = shared.checksum(url) == checksum
        except store.NotCommitted:
            published = False
        if not published:
            ctx.log(f"publishing the base model {configured} to the store as {url}")
            shared.publish(local, "models", name, log=ctx.log, keep_local=True)
        return url
    with ctx.session() as db:
        elsewhere = db.scalars(select(ModelVersion.path).where(
            ModelVersion.kind == ModelKind.base, ModelVersion.name == configured)
            .order_by(ModelVersion.id.desc())).first()
    if elsewhere is not None and store.is_url(elsewhere):
        return elsewhere
    if local.is_absolute() or configured.startswith((".", "~")):
        raise JobFailed(f"RLHF_BASE_MODEL names {configured}, a directory that is not on this "
                        "machine, and no machine that has it has published it to the store "
                        "yet: run a first stage on a machine that has the directory, or "
                        "publish it to the store and name its URL (docs/deploy.md).")
    return configured  # a hub id: each worker downloads it from the hub


def _describe_base(path: str) -> dict[str, Any]:
    """A configured base model: a directory here, an entry of the store, or a hub id."""
    shared = store.current()
    if shared is not None and store.is_url(path):
        return {"sha256": shared.checksum(path), "metrics": {}, "config": {}}
    if Path(path).is_dir():
        return describe_dir(Path(path))
    return {"sha256": None, "metrics": {}, "config": {}}


def _tiny_base(ctx: JobContext, path: str) -> dict[str, Any]:
    """The tiny base model, built on first use (and published, where there is a store)."""
    shared = store.current()
    if shared is not None and shared.committed(path):
        local = shared.fetch(path, log=ctx.log)
        return describe_dir(local) | {"sha256": shared.checksum(path)}
    local = (get_settings().models_dir / "base-tiny").resolve()
    if not (local / "config.json").exists():
        ctx.log(f"building the tiny base model in {local}")
        ctx.run_training(["tiny", "--out", str(local)])
    return publish_dir(local, log=ctx.log)


def pretrain_corpus(ctx: JobContext) -> str | None:
    """Pretraining text for PPO-ptx: RLHF_PRETRAIN_DATA, else the tiny model's own corpus."""
    configured = get_settings().pretrain_data
    if configured:
        return configured
    path, tiny = base_model_path()
    if not tiny:
        return None
    # Beside the local base model (built here from a seed: no store traffic).
    corpus = (get_settings().models_dir / "base-tiny-pretrain.jsonl").resolve()
    if not corpus.exists():
        # training.tiny.synthetic_corpus's text, from the standard-library module behind it:
        # importing training.tiny would load torch into the worker for a list of strings
        from training import toy_english

        tmp = corpus.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps({"text": t}) + "\n" for t in toy_english.corpus(512, 7)))
        tmp.replace(corpus)
    return str(corpus)
