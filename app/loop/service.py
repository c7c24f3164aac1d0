"""The loop across rounds: per round, the feedback that went in, the reward model beside
the labelers' own agreement, PPO's reward and KL, people's win rates, and the watch.

This domain sits above the others and reads them through their services (rounds, the
registry, agreement, evaluation); none of them imports it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.agreement import service as agreement
from app.loop.human import campaigns, human_figures
from app.loop.watch import Limits, watch
from app.registry import service as registry
from app.registry.models import ModelVersion
from app.rounds import service as rounds
from app.rounds.models import Round

MAX_ROUNDS = 200  # the newest rounds shown; the page stays one request

# The labelers' agreement on what a round could see: rankings made before it started,
# fixed once it exists, so kept per round instead of recomputed on every refresh.
_agreement: OrderedDict[tuple[int, datetime], dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def _agreement_before(db: Session, rnd: Round) -> dict[str, Any]:
    key = (rnd.id, rnd.created_at)
    with _lock:
        if key in _agreement:
            return _agreement[key]
    filters = agreement.make_filters(kind="rank", until=rnd.created_at)
    summary = agreement.summary(db=db, filters=filters)
    found = {"agreement": summary["pairwise_agreement"], "agreement_ci95": summary["ci95"],
             "n_comparisons": summary["n_comparisons"]}
    with _lock:
        _agreement[key] = found
        while len(_agreement) > MAX_ROUNDS:
            _agreement.popitem(last=False)
    return found


def _data(db: Session, rnd: Round) -> dict[str, Any]:
    """Demonstrations and rankings the round's export took, and the labelers' agreement."""
    export = next((j for j in rounds.current_jobs(db=db, round_id=rnd.id)
                   if j.kind == "export"), None)
    snapshots = (export.outputs or {}).get("snapshots", {}) if export else {}
    return {"demonstrations": snapshots.get("sft", {}).get("rows"),
            "rankings": snapshots.get("grouped", {}).get("rows"),
            **_agreement_before(db, rnd)}


def _metric(version: ModelVersion | None, *keys: str) -> float | None:
    metrics = version.metrics if version is not None else {}
    for key in keys:
        if isinstance(metrics.get(key), int | float):
            return float(metrics[key])
    return None


def _model(version: ModelVersion | None) -> dict[str, Any] | None:
    return None if version is None else {"id": version.id, "name": version.name}


def round_row(*, db: Session, rnd: Round, versions: dict[str, ModelVersion],
              known: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One round as the loop shows it (`known`: the campaigns, when already read)."""
    policy, rm = versions.get("policy"), versions.get("rm")
    data = _data(db, rnd)
    human = human_figures(db=db, policy=policy, known=known)
    return {
        "round_id": rnd.id, "state": rnd.state, "stages": list(rnd.stages),
        "created_at": rnd.created_at, "finished_at": rnd.finished_at,
        "models": {k: _model(versions.get(k)) for k in ("sft", "rm", "policy")},
        "data": data,
        "rm": {"val_accuracy": _metric(rm, "val_accuracy"),
               "labeler_ceiling": data["agreement"]},
        "ppo": {"reward": _metric(policy, "test_rm_score", "rm_score"),
                "kl": _metric(policy, "test_kl", "kl"),
                "sft_reward": _metric(policy, "sft_test_rm_score")},
        "human": human,
        "watch": watch(db=db, policy=policy, human=human),
    }


def loop(*, db: Session) -> dict[str, Any]:
    """Every round (the newest MAX_ROUNDS), oldest first, and the watch's limits."""
    listed = list(reversed(rounds.list_rounds(db=db, limit=MAX_ROUNDS)))
    versions = registry.round_versions(db=db, round_ids=[r.id for r in listed])
    known = campaigns(db=db)
    return {"rounds": [round_row(db=db, rnd=r, versions=versions.get(r.id, {}), known=known)
                       for r in listed],
            "limits": vars(Limits.from_settings())}


def clear_cache() -> None:
    """Forget the agreement kept per round."""
    with _lock:
        _agreement.clear()
