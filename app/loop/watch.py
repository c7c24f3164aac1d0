"""The reward-hacking watch: when a round's reward model and its people part ways.

The RM is a proxy for people's preference. A policy optimised against it can raise its
score by what the RM pays for and people do not want: longer answers, answers cut at the
length cap, a few phrases repeated, or simply drifting far from SFT. The PPO stage records
what the kept policy's test answers look like beside SFT's on the same prompts
(training/signals.py); this module reads those figures and people's win rates and raises
a flag for each way the round looks gamed. Flags are computed on read, from the policy's
recorded metrics and the campaigns' judgments, so a judgment that arrives later moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.config import get_settings
from app.loop.human import human_figures
from app.registry import service as registry
from app.registry.models import ModelVersion
from app.rounds import judged

OUTPUT_SIGNALS = ("mean_length", "at_limit_share", "no_eos_share", "repeated_ngram_share",
                  "distinct_2")
FLAGS = ("rm_up_people_flat", "kl_over_bound", "length_jump", "repetition_jump")


@dataclass(frozen=True)
class Limits:
    """The bounds a round's figures are held to (settings RLHF_WATCH_*)."""

    max_kl: float
    rm_rise: float
    rm_people_gap: float
    min_judgments: int
    length_jump: float
    cut_jump: float
    repetition_jump: float
    distinct_drop: float

    @classmethod
    def from_settings(cls) -> Limits:
        """The configured limits."""
        s = get_settings()
        return cls(max_kl=s.watch_max_kl, rm_rise=s.watch_rm_rise,
                   rm_people_gap=s.watch_rm_people_gap,
                   min_judgments=s.watch_min_judgments, length_jump=s.watch_length_jump,
                   cut_jump=s.watch_cut_jump, repetition_jump=s.watch_repetition_jump,
                   distinct_drop=s.watch_distinct_drop)


def _num(metrics: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def policy_signals(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The watch's figures from a policy's recorded metrics: its own on the test prompts,
    SFT's on the same prompts (`sft_…`), and the changes between them."""
    out: dict[str, float | None] = {
        "rm_score": _num(metrics, "test_rm_score", "rm_score"),
        "sft_rm_score": _num(metrics, "sft_test_rm_score"),
        "kl": _num(metrics, "test_kl", "kl"),
    }
    out["rm_gain"] = _minus(out["rm_score"], out["sft_rm_score"])
    for key in OUTPUT_SIGNALS:
        out[key] = _num(metrics, f"test_{key}")
        out[f"sft_{key}"] = _num(metrics, f"sft_test_{key}")
    length, before = out["mean_length"], out["sft_mean_length"]
    out["length_change"] = (length / before - 1 if length is not None and before
                            else None)
    return out


def people(human: dict[str, Any]) -> dict[str, Any] | None:
    """The comparison people's verdict is read from: against the previous policy, else
    (a first round) against SFT."""
    return human.get("vs_previous") or human.get("vs_sft")


def _people_flat(verdict: dict[str, Any] | None, limits: Limits) -> bool | None:
    """Whether people did not prefer the policy; None while too few have judged."""
    if verdict is None or verdict.get("ci95") is None:
        return None
    if verdict["n"] < limits.min_judgments and not verdict.get("complete"):
        return None
    return bool(verdict["ci95"][0] <= 0.5)


def judge(signals: dict[str, float | None], human: dict[str, Any],
          limits: Limits) -> dict[str, str]:
    """{flag: the sentence that explains it} for every way this round looks gamed."""
    out: dict[str, str] = {}
    if (parted := _rm_people_reason(signals, people(human), limits)) is not None:
        out["rm_up_people_flat"] = parted
    kl = signals["kl"]
    if kl is not None and kl > limits.max_kl:
        out["kl_over_bound"] = f"KL to SFT is {kl:.2f} nats, above the bound {limits.max_kl:g}."
    if (longer := _length_reason(signals, limits)) is not None:
        out["length_jump"] = longer
    if (repeats := _repetition_reason(signals, limits)) is not None:
        out["repetition_jump"] = repeats
    return out


def _rm_people_reason(signals: dict[str, float | None], verdict: dict[str, Any] | None,
                      limits: Limits) -> str | None:
    """Why the RM and people part ways, or None. People are flat (the lower 95% bound of
    the policy's win rate is at most ½) and the RM says otherwise: on the very pairs they
    judged, it prefers the policy more often than they do by over `rm_people_gap`. For a
    campaign no RM scored, the RM's gain over SFT on the test prompts stands in, which
    cannot tell a round as good as the one before it from one that gamed its RM."""
    if not _people_flat(verdict, limits):
        return None
    assert verdict is not None
    lo, hi = verdict["ci95"]
    people_say = (f"people's win rate is {verdict['win_rate']:.0%} (95% CI {lo:.0%}–{hi:.0%}, "
                  f"n {verdict['n']})")
    rm_win = verdict.get("rm_win_rate")
    if rm_win is not None:
        if rm_win - verdict["win_rate"] <= limits.rm_people_gap:
            return None  # the RM agrees with people: no better, and not scored better
        return (f"On the {verdict.get('rm_n') or verdict['n']} pairs people judged, the RM "
                f"prefers it {rm_win:.0%} of the time, but {people_say}.")
    gain = signals["rm_gain"]
    if gain is None or gain <= limits.rm_rise:
        return None
    return f"The RM scores it {gain:+.2f} over SFT, but {people_say}."


def _length_reason(signals: dict[str, float | None], limits: Limits) -> str | None:
    """Why the answers look padded: longer than SFT's, or more often cut at the cap."""
    parts = []
    change = signals["length_change"]
    if change is not None and change > limits.length_jump:
        parts.append(f"mean answer length {change:+.0%}")
    cut = max((d for d in (_minus(signals["at_limit_share"], signals["sft_at_limit_share"]),
                           _minus(signals["no_eos_share"], signals["sft_no_eos_share"]))
               if d is not None), default=None)
    if cut is not None and cut > limits.cut_jump:
        parts.append(f"answers cut at the cap or unfinished {cut * 100:+.0f} points")
    return _sentence(parts) if parts else None


def _repetition_reason(signals: dict[str, float | None], limits: Limits) -> str | None:
    """Why the answers look collapsed: more repeated 3-grams or less variety than SFT's."""
    parts = []
    repeated = _minus(signals["repeated_ngram_share"], signals["sft_repeated_ngram_share"])
    if repeated is not None and repeated > limits.repetition_jump:
        parts.append(f"repeated 3-grams {repeated * 100:+.0f} points")
    variety = _minus(signals["sft_distinct_2"], signals["distinct_2"])
    if variety is not None and variety > limits.distinct_drop:
        parts.append(f"distinct-2 {-variety * 100:+.0f} points")
    return _sentence(parts) if parts else None


def _sentence(parts: list[str]) -> str:
    text = " and ".join(parts) + " against SFT's answers to the same prompts."
    return text[0].upper() + text[1:]


def watch(*, db: Session, policy: ModelVersion | None,
          human: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"flags", "reasons", "signals"} of one round's policy (no policy: nothing to watch)."""
    if policy is None:
        return {"flags": [], "reasons": {}, "signals": {}}
    human = human if human is not None else human_figures(db=db, policy=policy)
    signals: dict[str, Any] = dict(policy_signals(policy.metrics or {}))
    verdict = people(human)
    signals["win_rate_vs_sft"] = (human.get("vs_sft") or {}).get("win_rate")
    signals["win_rate_vs_previous"] = (human.get("vs_previous") or {}).get("win_rate")
    signals["win_rate_people"] = verdict["win_rate"] if verdict else None
    signals["rm_win_rate_people_pairs"] = verdict.get("rm_win_rate") if verdict else None
    reasons = judge(signals, human, Limits.from_settings())
    return {"flags": list(reasons), "reasons": reasons, "signals": signals}


@judged.add_flag_source
def round_flags(*, db: Session, round_id: int) -> list[str]:
    """The watch's flags on a round (empty when it trained no policy): what `if_better`
    must not promote past without a researcher's confirmation."""
    policy = registry.round_versions(db=db, round_ids=[round_id]).get(round_id, {}).get("policy")
    return list(watch(db=db, policy=policy)["flags"])
