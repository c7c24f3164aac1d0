"""People's verdict on a round's policy: its win rate against SFT and against the policy
before it, read from the evaluation campaigns that compared it (found by model ids)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy.orm import Session

from app.evaluation import results as campaign_results
from app.evaluation import service as evaluations
from app.registry import service as registry
from app.registry.models import ModelVersion

COMPLETE = "complete"  # a campaign with every judgment in (or closed, or nothing to judge)
CACHE_SIZE = 256
MAX_CAMPAIGNS = 1000  # the newest campaigns read: two per round of the loop's newest 200, and more

# A campaign's figures change only with its judgments and its state: keyed by both, the
# page's refresh every few seconds does not rerun the bootstrap of every campaign.
_cache: OrderedDict[tuple[int, int, str], list[dict[str, Any]]] = OrderedDict()
_lock = threading.Lock()


def _rows(db: Session, campaign: dict[str, Any]) -> list[dict[str, Any]]:
    key = (campaign["id"], campaign["judgments"], campaign["state"])
    with _lock:
        if key in _cache:
            return _cache[key]
    rows = campaign_results.results(db=db, evaluation_id=campaign["id"])["results"]
    with _lock:
        _cache[key] = rows
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return rows


def _figure(db: Session, campaign: dict[str, Any], model_id: int) -> dict[str, Any]:
    row = next(r for r in _rows(db, campaign) if r["model_id"] == model_id)
    rm = ((campaign.get("rm_verdict") or {}).get("by_model") or {}).get(str(model_id)) or {}
    return {"win_rate": row["win_rate"], "ci95": row["ci95"], "n": row["n"],
            "evaluation_id": campaign["id"], "baseline_id": campaign["baseline_id"],
            "state": campaign["state"], "complete": campaign["state"] == COMPLETE,
            # the round's RM on the same pairs (None: a campaign nobody scored)
            "rm_win_rate": rm.get("win_rate"), "rm_n": rm.get("n")}


def campaigns(*, db: Session) -> list[dict[str, Any]]:
    """The newest campaigns, newest first, as the evaluation service describes them, each
    with its baseline's kind: read once for every round of the page."""
    described = evaluations.describe(db=db, evaluations=evaluations.list_evaluations(
        db=db, limit=MAX_CAMPAIGNS))
    kinds: dict[int, str] = {}
    for d in described:
        if d["baseline_id"] not in kinds:
            kinds[d["baseline_id"]] = registry.get_version(db=db, version_id=d["baseline_id"]).kind
        d["baseline_kind"] = kinds[d["baseline_id"]]
    return described


def human_figures(*, db: Session, policy: ModelVersion | None,
                  known: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """{"vs_sft", "vs_previous"}: the policy's win rate, 95% CI and judgments against an SFT
    baseline and against an earlier policy, from the newest campaign of each with any
    judgments (else the newest at all); None where no campaign compared them. `known`:
    the campaigns already read (`campaigns()`)."""
    out: dict[str, Any] = {"vs_sft": None, "vs_previous": None}
    if policy is None:
        return out
    known = campaigns(db=db) if known is None else known
    mine = [d for d in known if policy.id in d["model_ids"]]  # as a candidate, newest first
    for key, wanted in (("vs_sft", "sft"), ("vs_previous", "policy")):
        campaign = _newest_against(mine, wanted, policy.id)
        if campaign is not None:
            out[key] = _figure(db, campaign, policy.id)
    return out


def _newest_against(mine: list[dict[str, Any]], wanted: str,
                    policy_id: int) -> dict[str, Any] | None:
    """The newest campaign of the policy's against a baseline of this kind (an earlier
    policy for "policy"), preferring one with judgments; None if there is none."""
    fits = [d for d in mine if d["baseline_kind"] == wanted
            and (wanted != "policy" or d["baseline_id"] < policy_id)]
    judged = [d for d in fits if d["judgments"]]
    if judged:
        return judged[0]
    return fits[0] if fits else None


def clear_cache() -> None:
    """Forget every cached campaign figure."""
    with _lock:
        _cache.clear()
