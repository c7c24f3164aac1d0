"""Fresh candidates from the models: the loop closes here.

A generate job samples K candidates per prompt from a *mix* (by default the active policy
at two temperatures, the previous policy and the SFT model, as the paper and Llama 2 mix
sources for diversity), drops exact and near duplicates, and makes rank tasks of the
prompts left with at least 4 distinct candidates. Every candidate row keeps the version
that wrote it and its sampling parameters; the task payload shows labelers neither.
"""

from __future__ import annotations

import difflib
import json
import math
import random
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.errors import describe, validation_errors
from app.jobs.errors import JobError
from app.jobs.kinds import JobContext, job_kind
from app.prompts.models import Candidate, Prompt, Split
from app.queue import creation
from app.queue.models import Task, TaskKind, TaskState
from app.registry import service as registry
from app.registry.models import AliasEvent, ModelVersion
from app.registry.schemas import GenerateSpec

MIN_K, MAX_K = 4, 9
NEAR_DUPLICATE = 0.9  # difflib ratio at or above which two candidates count as one
SAMPLABLE = ("base", "sft", "policy")


def validate_generate(config: Any) -> dict[str, Any]:
    """A generate request checked against GenerateSpec, defaults filled in (422 naming the
    field); the models are checked at run time too, as aliases can move in between."""
    try:
        spec = GenerateSpec.model_validate(config)
    except ValidationError as exc:
        raise JobError(f"generate: {describe(validation_errors(exc.errors()))}", 422) from exc
    return spec.model_dump(exclude_none=True)


def check_models(*, db: Session, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The mix as [{version_id, path, name, temperature}], refusing reward models (422)."""
    members = config.get("mix") or _default_mix(db, config.get("model_id"))
    resolved = []
    for member in members:
        version: ModelVersion | None
        if "model_id" in member:
            version = registry.get_version(db=db, version_id=int(member["model_id"]))
        else:
            version = registry.alias_target(db=db, alias=str(member["alias"]))
        if version is None:
            continue  # e.g. no previous policy yet
        if version.kind not in SAMPLABLE:
            raise JobError(f"Version {version.id} is a {version.kind} model: candidates come "
                           "from a policy, SFT or base model.", 422)
        resolved.append({"version_id": version.id, "path": version.path, "name": version.name,
                         "temperature": float(member.get("temperature", 1.0))})
    if not resolved:
        raise JobError("No model to sample from: promote a policy or an SFT model, or name "
                       "generate.model_id.", 422)
    return resolved


def _default_mix(db: Session, model_id: int | None) -> list[dict[str, Any]]:
    if model_id is not None:
        return [{"model_id": model_id, "temperature": 0.7}, {"model_id": model_id,
                                                             "temperature": 1.0}]
    mix: list[dict[str, Any]] = []
    policy = registry.alias_target(db=db, alias="policy:active")
    if policy is not None:
        mix += [{"model_id": policy.id, "temperature": 0.7},
                {"model_id": policy.id, "temperature": 1.0}]
        before = db.scalars(select(AliasEvent.from_version_id).where(
            AliasEvent.alias == "policy:active", AliasEvent.to_version_id == policy.id,
            AliasEvent.from_version_id.is_not(None)).order_by(AliasEvent.id.desc())).first()
        if before is not None:
            mix.append({"model_id": before, "temperature": 1.0})
    sft = registry.alias_target(db=db, alias="sft:active")
    if sft is not None:
        mix.append({"model_id": sft.id, "temperature": 1.0})
    return mix


def pick_prompts(*, db: Session, config: dict[str, Any]) -> list[Prompt]:
    """The given prompts, or train-split prompts with no open rank task, newest first."""
    if config.get("prompt_ids"):
        ids = config["prompt_ids"]
        found = list(db.scalars(select(Prompt).where(Prompt.id.in_(ids))))
        missing = sorted(set(ids) - {p.id for p in found})
        if missing:
            raise JobError(f"Unknown prompt id(s): {missing[:20]}.", 422)
        return found
    open_rank = exists().where(Task.prompt_id == Prompt.id, Task.kind == TaskKind.rank,
                               Task.state == TaskState.open)
    stmt = (select(Prompt).where(Prompt.split == Split.train, ~open_rank)
            .order_by(Prompt.id.desc()).limit(config["n_prompts"]))
    return list(db.scalars(stmt))


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def distinct(items: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Up to k items whose texts are neither equal nor near-equal, taking sources in turn."""
    kept: list[dict[str, Any]] = []
    for item in items:
        norm = _norm(item["text"])
        if not norm:
            continue
        if any(norm == _norm(o["text"]) or difflib.SequenceMatcher(
                None, norm, _norm(o["text"])).ratio() >= NEAR_DUPLICATE for o in kept):
            continue
        kept.append(item)
        if len(kept) == k:
            break
    return kept


def _interleave(per_source: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for i in range(max((len(s) for s in per_source), default=0)):
        out += [s[i] for s in per_source if i < len(s)]
    return out


@job_kind("generate", queue="gpu", label="generate candidates")
def generate(ctx: JobContext) -> dict[str, Any]:
    """Sample the mix on the chosen prompts and make rank tasks of what is distinct."""
    config = validate_generate(ctx.config)
    with ctx.session() as db:
        mix = check_models(db=db, config=config)
        prompts = [(p.id, p.text) for p in pick_prompts(db=db, config=config)]
    ctx.set_inputs(mix=mix, prompt_ids=[p for p, _ in prompts])
    if not prompts:
        reason = "no eligible prompt (every train prompt has an open rank task)"
        ctx.log(reason)
        return {"prompts": 0, "tasks": 0, "skipped": 0, "candidates": 0, "task_ids": [],
                "reason": reason}
    source = ctx.workdir / "prompts.jsonl"
    source.write_text("".join(json.dumps({"prompt_id": i, "prompt": t}) + "\n"
                              for i, t in prompts))
    per_member = math.ceil(config["k"] * 1.5 / len(mix))  # spare samples for duplicates
    samples: dict[int, list[list[dict[str, Any]]]] = {i: [] for i, _ in prompts}
    for n, member in enumerate(mix):
        ctx.check_cancelled()
        out = ctx.workdir / f"samples-{n}.jsonl"
        params = {"temperature": member["temperature"], "top_p": config["top_p"],
                  "max_new_tokens": config["max_new_tokens"], "seed": config["seed"] + n}
        ctx.run_training(["sample", "--model", member["path"], "--prompts", str(source),
                          "--out", str(out), "--k", str(per_member),
                          *[f"--{k.replace('_', '-')}={v}" for k, v in params.items()]])
        for row in map(json.loads, Path(out).read_text().splitlines()):
            samples[row["prompt_id"]].append([
                {"text": c["text"], "version_id": member["version_id"], "params": params}
                for c in row["candidates"]])
        ctx.progress((n + 1) / (len(mix) + 1))
    return _make_tasks(ctx, config, samples)


def _make_tasks(ctx: JobContext, config: dict[str, Any],
                samples: dict[int, list[list[dict[str, Any]]]]) -> dict[str, Any]:
    rng = random.Random(config["seed"] + ctx.job_id)
    task_ids, skipped, n_candidates = [], 0, 0
    with ctx.session() as db:
        for prompt_id, per_source in samples.items():
            chosen = distinct(_interleave(per_source), config["k"])
            if len(chosen) < MIN_K:
                skipped += 1
                continue
            rows = [Candidate(prompt_id=prompt_id, text=c["text"], model=None,
                              model_version_id=c["version_id"], sampling_params=c["params"])
                    for c in chosen]
            db.add_all(rows)
            db.flush()
            ids = [r.id for r in rows]
            rng.shuffle(ids)
            task = creation.create_rank_task(db=db, prompt_id=prompt_id, candidate_ids=ids,
                                             overlap=config["overlap"],
                                             priority=config["priority"])
            task_ids.append(task.id)
            n_candidates += len(rows)
    ctx.log(f"{len(task_ids)} rank tasks, {n_candidates} candidates; {skipped} prompts had "
            f"fewer than {MIN_K} distinct candidates")
    out = {"prompts": len(samples), "tasks": len(task_ids), "skipped": skipped,
           "candidates": n_candidates, "task_ids": task_ids[:1000]}
    if not task_ids:
        out["reason"] = (f"all {skipped} prompts had fewer than {MIN_K} distinct outputs (the "
                         "mix sampled near-identical answers)")
    return out


def request(*, db: Session, config: dict[str, Any], user: Any) -> Any:
    """Validate a generate request now (models, prompts) and record its job."""
    from app.jobs import service as jobs

    clean = validate_generate(config)
    check_models(db=db, config=clean)
    if clean.get("prompt_ids"):
        pick_prompts(db=db, config=clean)
    return jobs.submit(db=db, kind="generate", config=clean, user=user)
