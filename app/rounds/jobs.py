"""The stages of a round as job kinds: export → sft → rm → ppo → promote (→ generate).

Each training stage resolves its inputs (this round's earlier outputs, else the active
aliases, else the base model), runs `python -m training STAGE --config file.json` as a child
into a directory of its own, and registers the model version in the transaction that marks it
succeeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import store
from app.config import get_settings
from app.exports import service as exports
from app.exports.schemas import ExportCreate
from app.jobs.errors import JobFailed
from app.jobs.kinds import JobContext, job_kind
from app.jobs.models import Job, JobState
from app.registry import service as registry
from app.rounds import stage_config
from app.rounds.models import Round

# What each training stage reads, as export kinds.
EXPORTS = {"sft": ("sft",), "rm": ("grouped", "sft"), "ppo": ("prompts",)}
WATERMARK = {"sft": "demonstration_id", "grouped": "ranking_id"}
# Training data is the train split; the prompts export keeps every split, as PPO rolls out
# on its train rows and chooses the step it keeps on its valid rows.
SPLIT = {"sft": "train", "grouped": "train", "prompts": None}


@job_kind("export", label="export snapshots")
def export(ctx: JobContext) -> dict[str, Any]:
    """Snapshot the train split for the round's stages (what the round could see at start)."""
    kinds = sorted({k for s in ctx.config.get("stages", []) for k in EXPORTS.get(s, ())})
    max_ids = ctx.config.get("max_ids", {})
    snapshots = {}
    for i, kind in enumerate(kinds):
        ctx.check_cancelled()
        filters: dict[str, Any] = {"split": SPLIT[kind]} if SPLIT[kind] else {}
        if WATERMARK.get(kind) in max_ids:
            filters["max_id"] = max_ids[WATERMARK[kind]]
        with ctx.session() as db:
            snap = exports.create_snapshot(db=db, user=None, request=ExportCreate(
                kind=kind, filters=filters))  # type: ignore[arg-type]
            exports.build(db=db, snapshot=snap)
            if snap.state != "done":
                raise JobFailed(f"the {kind} export failed: {snap.error}")
            snapshots[kind] = {"id": snap.id, "rows": snap.rows, "sha256": snap.sha256,
                               "path": _data_file(snap)}
        ctx.progress((i + 1) / len(kinds))
        done = snapshots[kind]
        ctx.log(f"exported {kind}: {done['rows']} rows (snapshot {done['id']})")
    return {"snapshots": snapshots}


def _data_file(snap: Any) -> str:
    # Joined as text: the path may be a store URL, whose "//" a Path would collapse.
    return f"{snap.path.rstrip('/')}/{snap.manifest['files'][0]['name']}"


def _round_outputs(db: Session, job_id: int) -> dict[str, dict[str, Any]]:
    """The outputs of the succeeded jobs of this job's round, by kind."""
    job = db.get(Job, job_id)
    if job is None or job.round_id is None:
        return {}
    rows = db.scalars(select(Job).where(Job.round_id == job.round_id,
                                        Job.state == JobState.succeeded).order_by(Job.id))
    return {j.kind: dict(j.outputs) for j in rows}


def _snapshots(ctx: JobContext, db: Session, kinds: tuple[str, ...]) -> dict[str, Any]:
    """This round's snapshots, or fresh ones for a stage run alone."""
    found = _round_outputs(db, ctx.job_id).get("export", {}).get("snapshots", {})
    missing = [k for k in kinds if k not in found]
    for kind in missing:
        filters = {"split": SPLIT[kind]} if SPLIT[kind] else {}
        snap = exports.create_snapshot(db=db, user=None, request=ExportCreate(
            kind=kind, filters=filters))  # type: ignore[arg-type]
        exports.build(db=db, snapshot=snap)
        found[kind] = {"id": snap.id, "rows": snap.rows, "sha256": snap.sha256,
                       "path": _data_file(snap)}
    return {k: found[k] for k in kinds}


def _model(ctx: JobContext, db: Session, kind: str) -> dict[str, Any] | None:
    """The version this stage builds on: this round's, else `<kind>:active`."""
    out = _round_outputs(db, ctx.job_id).get(kind)
    version: Any
    if out and out.get("model_version_id"):
        version = registry.get_version(db=db, version_id=out["model_version_id"])
    else:
        version = registry.alias_target(db=db, alias=f"{kind}:active")
    if version is None:
        return None
    return {"id": version.id, "path": version.path, "name": version.name,
            "sha256": version.sha256}


def _out(ctx: JobContext, kind: str) -> Path:
    return (get_settings().models_dir / f"{kind}-job{ctx.job_id}").resolve()


def _train(ctx: JobContext, stage: str, paths: dict[str, str], parent: dict[str, Any],
           snapshots: dict[str, Any], *models: dict[str, Any]) -> dict[str, Any]:
    out = _out(ctx, stage)
    ctx.set_inputs(out=str(out), parent=parent, snapshots=snapshots,
                   effective=stage_config.effective(stage, ctx.config))
    # The child reads local files: models and snapshots in the store come through the cache,
    # each model checked against the checksum registered for it.
    sums = {m["path"]: m.get("sha256") for m in (parent, *models)}
    paths = {k: store.localize(v, sha256=sums.get(v), log=ctx.log) for k, v in paths.items()}
    values = {**stage_config.overrides(stage, ctx.config), **paths, "out": str(out)}
    argv = stage_config.config_argv(stage, values, ctx.workdir / f"{stage}.config.json")
    ctx.run_training(argv, processes=int(ctx.config.get("num_processes", 1) or 1))
    return registry.publish_dir(out, log=ctx.log) | {
        "out": str(out), "parent_id": parent["id"],
        "snapshot_ids": [s["id"] for s in snapshots.values()]}


def _register(kind: str):  # type: ignore[no-untyped-def]
    def on_success(db: Session, job: Job, outputs: dict[str, Any]) -> None:
        version = registry.register(db=db, kind=kind, job=job, outputs=outputs)
        # A new dict: the flushed one must not be mutated, or the change goes unseen.
        job.outputs = {**outputs, "model_version_id": version.id}

    return on_success


@job_kind("sft", queue="gpu", on_success=_register("sft"), label="supervised fine-tuning")
def sft(ctx: JobContext) -> dict[str, Any]:
    """Fine-tune the base model on the demonstrations (response tokens only)."""
    base = registry.ensure_base(ctx)
    with ctx.session() as db:
        snaps = _snapshots(ctx, db, ("sft",))
    return _train(ctx, "sft", {"base_model": base["path"], "train_data": snaps["sft"]["path"]},
                  base, snaps)


@job_kind("rm", queue="gpu", on_success=_register("rm"), label="reward model")
def rm(ctx: JobContext) -> dict[str, Any]:
    """Train the K-way reward model from the SFT model (this round's, else the active one)."""
    with ctx.session() as db:
        parent = _model(ctx, db, "sft")
        snaps = _snapshots(ctx, db, ("grouped", "sft"))
    parent = parent or registry.ensure_base(ctx)
    return _train(ctx, "rm", {"base_model": parent["path"],
                              "train_data": snaps["grouped"]["path"],
                              "demonstrations": snaps["sft"]["path"]}, parent, snaps)


@job_kind("ppo", queue="gpu", on_success=_register("policy"), label="PPO")
def ppo(ctx: JobContext) -> dict[str, Any]:
    """PPO(-ptx) from the SFT model against the reward model."""
    with ctx.session() as db:
        parent = _model(ctx, db, "sft")
        reward = _model(ctx, db, "rm")
        snaps = _snapshots(ctx, db, ("prompts",))
    if reward is None:
        raise JobFailed("PPO needs a reward model: run the rm stage, or promote one (rm:active).")
    parent = parent or registry.ensure_base(ctx)
    paths = {"policy_model": parent["path"], "reward_model": reward["path"],
             "prompts": snaps["prompts"]["path"]}
    config = dict(ctx.config)
    pretrain = config.pop("pretrain_data", None) or registry.pretrain_corpus(ctx)
    if pretrain:
        paths["pretrain_data"] = pretrain
    elif float(stage_config.effective("ppo", config).get("ptx_coef") or 0) > 0:
        ctx.log("no pretraining text (RLHF_PRETRAIN_DATA): plain PPO, ptx_coef = 0")
        config["ptx_coef"] = 0.0
    ctx.config = config
    ctx.set_inputs(reward_model=reward)
    return _train(ctx, "ppo", paths, parent, snaps, reward)


@job_kind("promote", label="promote the round's models")
def promote(ctx: JobContext) -> dict[str, Any]:
    """Point sft:active, rm:active and policy:active at the versions this round made."""
    moved = {}
    with ctx.session() as db:
        job = db.get(Job, ctx.job_id)
        rnd = db.get(Round, job.round_id) if job and job.round_id else None
        for kind, out in _round_outputs(db, ctx.job_id).items():
            if kind in ("sft", "rm", "ppo") and out.get("model_version_id"):
                version = registry.get_version(db=db, version_id=out["model_version_id"])
                registry.move_alias(db=db, alias=f"{version.kind}:active", version=version,
                                    user_id=rnd.created_by_id if rnd else None, action="round")
                moved[f"{version.kind}:active"] = version.id
    ctx.log(f"promoted {moved}")
    return {"aliases": moved}
