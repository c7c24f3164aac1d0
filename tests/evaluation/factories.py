"""Model versions, test prompts and campaigns for the evaluation tests."""

import hashlib
import itertools
from typing import Any

from sqlalchemy.orm import Session

from app.auth.models import User
from app.evaluation import service
from app.evaluation.models import Evaluation
from app.evaluation.schemas import EvaluationCreate
from app.exports.models import DatasetSnapshot
from app.prompts.models import Prompt, PromptSource, Split
from app.registry.models import ModelVersion, ModelVersionSnapshot

_seq = itertools.count(1)


def make_version(db: Session, kind: str = "policy", *, name: str | None = None,
                 parent: ModelVersion | None = None, snapshot: DatasetSnapshot | None = None,
                 metrics: dict[str, Any] | None = None) -> ModelVersion:
    """A registered model version (no files: generation is faked where it runs)."""
    n = next(_seq)
    version = ModelVersion(kind=kind, name=name or f"{kind}-v{n}", path=f"/models/{kind}-{n}",
                           parent_id=parent.id if parent else None, metrics=metrics or {},
                           config={})
    db.add(version)
    db.flush()
    if snapshot is not None:
        db.add(ModelVersionSnapshot(model_version_id=version.id, snapshot_id=snapshot.id))
        db.flush()
    return version


def make_prompts(db: Session, n: int, split: Split = Split.test) -> list[Prompt]:
    """n prompts of one split, each from its own end user."""
    out = []
    for _ in range(n):
        i = next(_seq)
        text = f"Evaluation prompt {i}: describe a {split.value} thing."
        out.append(Prompt(text=text, text_hash=hashlib.sha256(text.encode()).hexdigest(),
                          source=PromptSource.imported, end_user_id=f"user-{i}", split=split,
                          meta={}, pii_counts={}))
    db.add_all(out)
    db.flush()
    return out


def prompts_snapshot(db: Session, max_prompt_id: int) -> DatasetSnapshot:
    """A finished `prompts` export of every prompt up to this id, as its manifest says."""
    snap = DatasetSnapshot(kind="prompts", format="jsonl", filters={}, options={}, state="done",
                           rows=0, manifest={"kind": "prompts", "source": {"max_id": max_prompt_id},
                                             "reproduce": {"kind": "prompts",
                                                           "filters": {"max_id": max_prompt_id}}})
    db.add(snap)
    db.flush()
    return snap


def spec(**kw: Any) -> EvaluationCreate:
    """A campaign request (fields as the API takes them)."""
    return EvaluationCreate.model_validate(kw)


def campaign(db: Session, user: User | None, *, candidates: list[ModelVersion],
             baseline: ModelVersion, n: int, overlap: int = 1, judges: str = "held_out",
             texts: dict[int, str] | None = None) -> Evaluation:
    """A campaign whose outputs are already generated (distinct texts per version, unless
    `texts` gives a version's text for every prompt, e.g. to make identical pairs)."""
    ev = service.create_evaluation(db=db, user=user, spec=spec(
        model_ids=[c.id for c in candidates], baseline_id=baseline.id, n_prompts=n,
        overlap=overlap, judges=judges))
    outputs = {v.id: {p: (texts or {}).get(v.id) or f"Answer number {i} to prompt {p}."
                      for p in ev.prompt_ids} for i, v in enumerate([baseline, *candidates])}
    service.create_items(db=db, evaluation_id=ev.id, outputs=outputs)
    return ev
