"""What the model pages show: versions by kind, a version's snapshots, its place from round
to round, the candidates it wrote, the version an alias would roll back to, and two
versions' metrics side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.models import Job
from app.prompts.models import Candidate, Prompt
from app.registry import service as registry
from app.registry.models import AliasEvent, ModelVersion

KIND_ORDER = ("policy", "rm", "sft", "base")
KIND_NAMES = {"policy": "Policies", "rm": "Reward models", "sft": "SFT models",
              "base": "Base models"}
# Which way a metric is better, by words in its key (for the compare page's colours); a
# metric matching neither (response_len, steps, a new one) is left uncoloured.
LOWER_IS_BETTER = ("loss", "kl", "perplexity", "entropy", "seconds", "time", "no_eos")
HIGHER_IS_BETTER = ("accuracy", "reward", "score", "win_rate", "auc")


@dataclass(frozen=True)
class MetricRow:
    key: str
    a: Any
    b: Any
    delta: float | None
    better: str | None  # "a" | "b" | None


def by_kind(versions: list[ModelVersion]) -> list[tuple[str, str, list[ModelVersion]]]:
    """(kind, heading, versions) in the order a researcher reads them."""
    return [(k, KIND_NAMES[k], [v for v in versions if v.kind == k]) for k in KIND_ORDER
            if any(v.kind == k for v in versions)]


def neighbours(*, db: Session, version: ModelVersion) -> dict[str, ModelVersion | None]:
    """The previous and next versions of the same kind (round to round)."""
    same = ModelVersion.kind == version.kind
    before = db.scalars(select(ModelVersion).where(same, ModelVersion.id < version.id)
                        .order_by(ModelVersion.id.desc()).limit(1)).first()
    after = db.scalars(select(ModelVersion).where(same, ModelVersion.id > version.id)
                       .order_by(ModelVersion.id).limit(1)).first()
    return {"previous": before, "next": after}


def round_versions(*, db: Session, version: ModelVersion) -> list[ModelVersion]:
    """The versions its round made (snapshot → SFT → RM → policy), in order."""
    if version.round_id is None:
        return []
    stmt = select(ModelVersion).where(ModelVersion.round_id == version.round_id)
    return list(db.scalars(stmt.order_by(ModelVersion.id)))


def generated(*, db: Session, version_id: int, limit: int = 5) -> tuple[int, list[Any]]:
    """How many candidates this version wrote, and the newest few with their prompts."""
    count = db.scalar(select(func.count()).select_from(Candidate)
                      .where(Candidate.model_version_id == version_id)) or 0
    rows = db.execute(select(Candidate, Prompt.text).join(Prompt, Prompt.id == Candidate.prompt_id)
                      .where(Candidate.model_version_id == version_id)
                      .order_by(Candidate.id.desc()).limit(limit)).all()
    return count, [{"candidate": c, "prompt": p} for c, p in rows]


def rollback_targets(*, db: Session) -> dict[str, int]:
    """For each alias kind, the version a rollback would move it back to."""
    out = {}
    for kind in registry.ALIAS_KINDS:
        last = db.scalars(select(AliasEvent).where(AliasEvent.alias == f"{kind}:active")
                          .order_by(AliasEvent.id.desc()).limit(1)).first()
        if last is not None and last.from_version_id is not None:
            out[kind] = last.from_version_id
    return out


def job_of(*, db: Session, version: ModelVersion) -> Job | None:
    return db.get(Job, version.job_id) if version.job_id else None


def flat(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def direction(key: str) -> int:
    """+1 where a higher value of this metric is better, -1 where lower is, 0 where it is
    neither (a length, a count) or not known."""
    name = key.lower()
    if any(word in name for word in LOWER_IS_BETTER):
        return -1
    return 1 if any(word in name for word in HIGHER_IS_BETTER) else 0


def compare_default(version: ModelVersion, others: list[ModelVersion]) -> ModelVersion | None:
    """What a version is first compared with: the previous one of its kind, else its
    parent (a first policy against the SFT model it started from), else none."""
    same = [v for v in others if v.kind == version.kind and v.id < version.id]
    if same:
        return max(same, key=lambda v: v.id)
    return next((v for v in others if v.id == version.parent_id), None)


def compare_metrics(a: ModelVersion, b: ModelVersion) -> list[MetricRow]:
    """Every metric of either version, with b − a and which is better where that is clear."""
    ma, mb = flat(a.metrics), flat(b.metrics)
    rows = []
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key), mb.get(key)
        delta = float(vb) - float(va) if isinstance(va, int | float) and isinstance(
            vb, int | float) and _number(va) and _number(vb) else None
        better, sign = None, direction(key)
        if delta and sign:
            better = "b" if delta * sign > 0 else "a"
        rows.append(MetricRow(key, va, vb, delta, better))
    return rows


def compare_config(a: ModelVersion, b: ModelVersion) -> list[tuple[str, Any, Any]]:
    """The settings where the two versions differ."""
    ca, cb = flat(a.config), flat(b.config)
    return [(k, ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]


def emails(*, db: Session, user_ids: set[int | None]) -> dict[int, str]:
    """Who moved an alias, by user id."""
    from app.auth.models import User

    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    rows = db.execute(select(User.id, User.email).where(User.id.in_(ids))).all()
    return {user_id: email for user_id, email in rows}
