"""Measures of a round, judged by the hidden preference: the reward model's held-out
accuracy and a policy's win rate. Model directories load lazily (torch only here)."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulation.judges import Judge, RewardModelJudge, prefers, true_order
from simulation.report import Ranking, accuracy_vs


@dataclass(frozen=True)
class WinRate:
    """Share of prompts where A's response beats B's (a tie counts half), with a 95 % CI."""

    rate: float
    n: int
    ties: int
    lo: float
    hi: float

    @property
    def significant(self) -> bool:
        """The CI excludes 1/2: A is better (or worse) than B beyond chance."""
        return self.lo > 0.5 or self.hi < 0.5

    def to_json(self) -> dict[str, Any]:
        return {"win_rate": self.rate, "n": self.n, "ties": self.ties, "ci95": [self.lo, self.hi]}


def win_rate(judge: Judge, prompts: Sequence[str], a: Sequence[str],
             b: Sequence[str]) -> WinRate:
    """A's win rate over B under the hidden preference, prompt by prompt; the CI is Wilson's
    score interval on the wins with ties split (conservative enough for n of 50 or more)."""
    if not prompts:
        return WinRate(0.5, 0, 0, 0.0, 1.0)
    scores = [prefers(judge, p, x, y) for p, x, y in zip(prompts, a, b, strict=True)]
    n, rate = len(scores), sum(scores) / len(scores)
    z = 1.959964
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return WinRate(rate, n, scores.count(0.5), max(0.0, centre - half), min(1.0, centre + half))


def rm_accuracy(rm: Judge, prompts: dict[int, str], texts: dict[int, dict[int, str]],
                rankings: dict[int, list[Ranking]],
                truth: dict[int, list[int]]) -> dict[str, float | None]:
    """A reward model's pairwise accuracy on rankings it was not trained on: against the
    labelers' (noisy) rankings and against the hidden preference."""
    rm_order = {tid: true_order(rm, prompts[tid], list(texts[tid].items())) for tid in rankings}
    as_rankings = {tid: [[[cid] for cid in order]] for tid, order in rm_order.items()}
    return {"vs_labels": accuracy_vs(rm_order, rankings),
            "vs_hidden": accuracy_vs(truth, as_rankings)}


def load_rm(path: str | Path) -> Judge:
    """A reward-model directory as a judge."""
    return RewardModelJudge(Path(path))


def rollout_tokens(*paths: str | Path, default: int = 64) -> int:
    """The longest rollout these models were trained with (their manifests' max_new_tokens),
    as a campaign samples every side of a comparison; `default` when none records one."""
    from training.outputs import read_manifest

    configs = [(read_manifest(path) or {}).get("config") or {} for path in paths]
    return max((c["max_new_tokens"] for c in configs if isinstance(c.get("max_new_tokens"), int)),
               default=default)


def policy_sampler(path: str | Path, max_new_tokens: int = 64, seed: int = 0,
                   temperature: float = 1.0) -> Callable[[Sequence[str]], list[str]]:
    """A function that answers prompts with the policy in this directory (one sample each)."""
    import torch

    from training.models import load_policy, load_tokenizer
    from training.sampling import sample

    tok = load_tokenizer(path)
    model = load_policy(path, tok).eval()

    def answer(prompts: Sequence[str]) -> list[str]:
        torch.manual_seed(seed)
        with torch.no_grad():
            out: list[str] = []
            for i in range(0, len(prompts), 32):
                out += [r[0] for r in sample(model, tok, prompts[i:i + 32], k=1,
                                             max_new_tokens=max_new_tokens,
                                             temperature=temperature)]
            return out

    return answer
