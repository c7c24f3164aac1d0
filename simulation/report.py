"""What a simulated run saw, and its JSON report: counts, errors by status, latency
percentiles and the agreement the labelers achieved (the app's pooled definition)."""

import json
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

Ranking = Sequence[Sequence[int]]  # groups of candidate ids, best first


def pooled_agreement(rankings_by_task: Mapping[int, Sequence[Ranking]]) -> tuple[float | None,
                                                                                int]:
    """Over every task, every two of its rankings, every pair of outputs tied by neither:
    the share ordered the same way, and how many such comparisons there were."""
    same = total = 0
    for rankings in rankings_by_task.values():
        places = [{cid: i for i, group in enumerate(r) for cid in group} for r in rankings]
        for a, b in combinations(places, 2):
            for x, y in combinations(sorted(a.keys() & b.keys()), 2):
                if a[x] == a[y] or b[x] == b[y]:
                    continue
                total += 1
                same += (a[x] < a[y]) == (b[x] < b[y])
    return (same / total if total else None), total


def accuracy_vs(truth_by_task: Mapping[int, Sequence[int]],
                rankings_by_task: Mapping[int, Sequence[Ranking]]) -> float | None:
    """Share of untied output pairs the rankings order as the hidden preference does."""
    right = total = 0
    for task_id, rankings in rankings_by_task.items():
        truth = {cid: i for i, cid in enumerate(truth_by_task.get(task_id, ()))}
        for ranking in rankings:
            place = {cid: i for i, group in enumerate(ranking) for cid in group}
            for x, y in combinations(sorted(place.keys() & truth.keys()), 2):
                if place[x] != place[y]:
                    total += 1
                    right += (place[x] < place[y]) == (truth[x] < truth[y])
    return right / total if total else None


def percentiles(seconds: list[float]) -> dict[str, float | int]:
    """n, p50, p90, p99 and max of latencies, in milliseconds."""
    if not seconds:
        return {"n": 0}
    ordered = sorted(seconds)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(ordered), "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
            "max": round(ordered[-1] * 1000, 1)}


@dataclass
class Receipt:
    """A submission the server answered with a 2xx: what the load test looks up."""

    kind: str
    id: int
    task_id: int
    assignment_id: int
    user_email: str


@dataclass
class Tally:
    """Everything the pool's labelers record while they work (one event loop: no locks)."""

    submitted: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    heartbeats: int = 0
    replays: int = 0
    replay_mismatches: int = 0
    retries: int = 0
    abandoned: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    receipts: list[Receipt] = field(default_factory=list)
    rankings: dict[int, list[Ranking]] = field(default_factory=lambda: defaultdict(list))
    honest_rankings: dict[int, list[Ranking]] = field(default_factory=lambda: defaultdict(list))
    truth: dict[int, list[int]] = field(default_factory=dict)
    texts: dict[int, tuple[str, dict[int, str]]] = field(default_factory=dict)  # rank tasks
    choices: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def total(self) -> int:
        return sum(self.submitted.values())

    def error(self, what: str, status: int | str, detail: str = "") -> None:
        """Count a failed request as '<what> <status>' and keep a few samples."""
        self.errors[f"{what} {status}"] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{what} {status}: {detail[:200]}")

    def server_errors(self) -> int:
        """Responses with a 5xx status."""
        return sum(n for key, n in self.errors.items() if key.split()[-1].startswith("5"))


def build(tally: Tally, *, settings: dict[str, Any], expected_agreement: float | None,
          server_agreement: dict[str, Any] | None = None,
          receipts: bool = False) -> dict[str, Any]:
    """The JSON report of a run."""
    seconds = (tally.finished or time.monotonic()) - tally.started
    agreement, n_comparisons = pooled_agreement(tally.rankings)
    honest, n_honest = pooled_agreement(tally.honest_rankings)
    compare_same, compare_n = _compare_agreement(tally.choices)
    report: dict[str, Any] = {
        "settings": settings,
        "seconds": round(seconds, 2),
        "submitted": {"total": tally.total, "by_kind": dict(sorted(tally.submitted.items()))},
        "submits_per_s": round(tally.total / seconds, 2) if seconds > 0 else None,
        "skipped": tally.skipped,
        "heartbeats": tally.heartbeats,
        "retried_submits": tally.retries,
        "abandoned_submits": tally.abandoned,
        "idempotent_replays": {"sent": tally.replays, "mismatched": tally.replay_mismatches},
        "errors": dict(sorted(tally.errors.items())),
        "server_errors": tally.server_errors(),
        "error_samples": tally.error_samples,
        "latency_ms": {op: percentiles(v) for op, v in sorted(tally.latency.items())},
        "agreement": {
            "target": settings.get("agreement"),
            "expected": expected_agreement,
            "pairwise": agreement, "n_comparisons": n_comparisons,
            "honest_pairwise": honest, "honest_n_comparisons": n_honest,
            "vs_hidden_preference": accuracy_vs(tally.truth, tally.honest_rankings),
            "compare_same_choice": compare_same, "compare_n": compare_n,
            "server": server_agreement,
        },
    }
    if receipts:
        report["receipts"] = [r.__dict__ for r in tally.receipts]
    return report


def _compare_agreement(choices: dict[int, list[str]]) -> tuple[float | None, int]:
    same = total = 0
    for picks in choices.values():
        for a, b in combinations(picks, 2):
            total += 1
            same += a == b
    return (same / total if total else None), total


def write(report: dict[str, Any], path: Path) -> None:
    """Write the report as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
