"""A campaign's results: the human numbers (win rates, Bradley–Terry, labelers, position
bias) from its judgments, and, apart from them, the automatic signals training recorded."""

import csv
import io
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.evaluation import stats
from app.evaluation.models import Evaluation, EvaluationItem, Judgment
from app.evaluation.provenance import ProvenanceError, Version, get_version
from app.evaluation.service import get

# Where the PPO stage records each automatic signal (first key found wins); the page says
# which key each number came from.
SIGNAL_KEYS = {
    "rm_score": ("rm_score_test", "test_rm_score", "rm_score"),
    "kl_to_sft": ("test_kl", "kl_to_sft", "kl"),
    "heldout_lm_loss": ("heldout_lm_loss",),
    "initial_heldout_lm_loss": ("initial_heldout_lm_loss",),
}


def _rows(db: Session, evaluation_id: int) -> dict[str, np.ndarray]:
    stmt = (select(Judgment.user_id, Judgment.item_id, Judgment.choice, Judgment.outcome,
                   EvaluationItem.prompt_id, EvaluationItem.model_id)
            .join(EvaluationItem, EvaluationItem.id == Judgment.item_id)
            .where(Judgment.evaluation_id == evaluation_id).order_by(Judgment.id))
    rows = db.execute(stmt).all()
    return {
        "user": np.array([r[0] for r in rows], dtype=np.int64),
        "item": np.array([r[1] for r in rows], dtype=np.int64),
        "chose_a": np.array([r[2] == "a" for r in rows], dtype=bool),
        "decisive": np.array([r[2] in ("a", "b") for r in rows], dtype=bool),
        "outcome": np.array([stats.OUTCOME_CODES[r[3]] for r in rows], dtype=np.int64),
        "prompt": np.array([r[4] for r in rows], dtype=np.int64),
        "model": np.array([r[5] for r in rows], dtype=np.int64),
    }


def _share(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _ci(c: tuple[float, float] | None) -> list[float] | None:
    return None if c is None or any(np.isnan(c)) else [round(c[0], 6), round(c[1], 6)]


def _model_result(r: dict[str, np.ndarray], model_id: int, name: str) -> dict[str, Any]:
    m = r["model"] == model_id
    out, prompts = r["outcome"][m], r["prompt"][m]
    rate = stats.win_rate(prompts, out, seed=model_id)
    bias = stats.position_bias(prompts, r["chose_a"][m], r["decisive"][m], seed=model_id)
    return {
        "model_id": model_id, "name": name, "win_rate": _share(rate.value),
        "ci95": _ci(rate.ci95), "n": rate.n,
        "wins": int(np.sum(out == stats.CANDIDATE)), "losses": int(np.sum(out == stats.BASELINE)),
        "ties": _share(stats.outcome_rate(out, stats.TIE)),
        "both_bad": _share(stats.outcome_rate(out, stats.BOTH_BAD)),
        "n_ties": int(np.sum(out == stats.TIE)), "n_both_bad": int(np.sum(out == stats.BOTH_BAD)),
        "n_prompts": int(np.unique(prompts).size), "position_a": _share(bias.value),
    }


def _bradley_terry(r: dict[str, np.ndarray], ev: Evaluation,
                   names: dict[int, str]) -> list[dict[str, Any]]:
    versions = [ev.baseline_id, *ev.model_ids]
    index = {v: i for i, v in enumerate(versions)}
    if r["outcome"].size == 0:
        return []
    first = np.array([index[int(m)] for m in r["model"]])
    score = stats.scores(r["outcome"])
    point, ci = stats.bradley_terry(r["prompt"], first, np.zeros_like(first), score,
                                    n_models=len(versions), anchor=0)
    return [{"model_id": v, "name": names[v], "score": round(float(point[i]), 2),
             "ci95": None if np.isnan(ci[i]).any() else [round(float(ci[i, 0]), 2),
                                                         round(float(ci[i, 1]), 2)]}
            for i, v in enumerate(versions)]


def _per_labeler(r: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    same, others = stats.agreement_per_judgment(r["item"], r["outcome"])
    out = []
    for user in np.unique(r["user"]):
        m = r["user"] == user
        o = r["outcome"][m]
        decisive = r["decisive"][m]
        pairs = int(others[m].sum())
        out.append({
            "user_id": int(user), "n": int(m.sum()),
            "win_rate": _share(float(np.mean(stats.scores(o)))),
            "ties": _share(stats.outcome_rate(o, stats.TIE)),
            "both_bad": _share(stats.outcome_rate(o, stats.BOTH_BAD)),
            "position_a": _share(float(np.mean(r["chose_a"][m][decisive]))
                                 if decisive.any() else None),
            "agreement": _share(float(same[m].sum()) / pairs if pairs else None),
            "n_pairs": pairs,
        })
    return out


def _named(db: Session, labelers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each labeler's email and name: the results are for staff, who may see who judged."""
    ids = [row["user_id"] for row in labelers]
    who = {u.id: u for u in db.execute(select(User.id, User.email, User.name)
                                       .where(User.id.in_(ids)))} if ids else {}
    return [{**row, "email": who[row["user_id"]].email if row["user_id"] in who else "",
             "name": who[row["user_id"]].name if row["user_id"] in who else ""}
            for row in labelers]


def _version(db: Session, version_id: int) -> Version | None:
    try:
        return get_version(db=db, version_id=version_id)
    except ProvenanceError:
        return None


def automatic_signals(versions: list[Version]) -> list[dict[str, Any]]:
    """Per version, the RM score, KL to SFT and held-out LM loss its training recorded."""
    out = []
    for v in versions:
        row: dict[str, Any] = {"model_id": v.id, "name": v.name, "kind": v.kind, "sources": {}}
        for signal, keys in SIGNAL_KEYS.items():
            key = next((k for k in keys if isinstance(v.metrics.get(k), int | float)), None)
            row[signal] = float(v.metrics[key]) if key else None
            if key:
                row["sources"][signal] = key
        out.append(row)
    return out


def results(*, db: Session, evaluation_id: int) -> dict[str, Any]:
    """Everything the results page, its JSON and its CSV show."""
    ev = get(db=db, evaluation_id=evaluation_id)
    r = _rows(db, ev.id)
    found = {v: _version(db, v) for v in [ev.baseline_id, *ev.model_ids]}
    names = {v: (found[v].name if found[v] else f"version {v}") for v in found}  # type: ignore[union-attr]
    share, pairs = stats.agreement(r["item"], r["outcome"])
    bias = stats.position_bias(r["prompt"], r["chose_a"], r["decisive"])
    n_items = len(db.scalars(select(EvaluationItem.id)
                             .where(EvaluationItem.evaluation_id == ev.id)).all())
    return {
        "id": ev.id, "name": ev.name, "state": ev.state, "closed_reason": ev.closed_reason,
        "baseline_id": ev.baseline_id,
        "baseline_name": names[ev.baseline_id],
        "results": [_model_result(r, m, names[m]) for m in ev.model_ids],
        "bradley_terry": _bradley_terry(r, ev, names),
        "per_labeler": _named(db, _per_labeler(r)),
        "agreement": _share(share), "agreement_pairs": pairs,
        "position_bias": {"value": _share(bias.value), "ci95": _ci(bias.ci95), "n": bias.n},
        "identical_pairs": ev.identical_pairs, "judgments": int(r["outcome"].size),
        "required": n_items * ev.overlap,
        "automatic": automatic_signals([v for v in found.values() if v is not None]),
    }


CSV_COLUMNS = ("model_id", "name", "win_rate", "ci95_lo", "ci95_hi", "n", "wins", "losses",
               "n_ties", "n_both_bad", "ties", "both_bad", "n_prompts", "position_a",
               "bt_score", "bt_ci95_lo", "bt_ci95_hi")


def results_csv(*, data: dict[str, Any]) -> str:
    """One row per candidate version (win rate vs the baseline, BT score), as CSV."""
    bt = {b["model_id"]: b for b in data["bradley_terry"]}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for row in data["results"]:
        ci = row["ci95"] or [None, None]
        b = bt.get(row["model_id"], {})
        bci = b.get("ci95") or [None, None]
        values = {**row, "ci95_lo": ci[0], "ci95_hi": ci[1], "bt_score": b.get("score"),
                  "bt_ci95_lo": bci[0], "bt_ci95_hi": bci[1]}
        writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def verdict(*, db: Session, model_id: int) -> dict[str, Any]:
    """What promoting this version should confirm: it has no judged campaign as a
    candidate, or it lost its latest one (win rate below ½ against that baseline)."""
    from app.evaluation.service import list_evaluations

    judged = [e for e in list_evaluations(db=db, model_id=model_id)
              if model_id in e.model_ids
              and db.scalar(select(Judgment.id).join(EvaluationItem,
                                                     EvaluationItem.id == Judgment.item_id)
                            .where(Judgment.evaluation_id == e.id,
                                   EvaluationItem.model_id == model_id).limit(1))]
    out: dict[str, Any] = {"model_id": model_id, "campaigns": len(judged),
                           "evaluation_id": None, "baseline_id": None, "win_rate": None,
                           "ci95": None, "needs_confirmation": True,
                           "reason": "This version has no judged evaluation yet."}
    if not judged:
        return out
    last = judged[0]  # newest first
    row = next(r for r in results(db=db, evaluation_id=last.id)["results"]
               if r["model_id"] == model_id)
    lost = row["win_rate"] is not None and row["win_rate"] < 0.5
    out.update(evaluation_id=last.id, baseline_id=last.baseline_id, win_rate=row["win_rate"],
               ci95=row["ci95"], needs_confirmation=lost,
               reason=(f"It lost its latest evaluation (#{last.id}): preferred "
                       f"{row['win_rate'] * 100:.1f}% of the time to the baseline."
                       if lost else None))
    return out
