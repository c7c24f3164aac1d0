"""Labeler noise calibrated to a target pairwise agreement between labelers.

The model (Thurstone's): a labeler ranks K outputs by perceived utilities
u_i = -r_i + sigma * e_i, where r_i is output i's place (1 = best) in the hidden preference's
strict order and e_i ~ N(0, 1) is drawn afresh for every output of every task. Two outputs
m places apart are then ordered correctly with probability

    P_m(sigma) = Phi(m / (sigma * sqrt(2)))     (the difference of two noises has sd sigma √2)

and two labelers with noise sigma_a, sigma_b order that pair the same way with probability
P_m(a) P_m(b) + (1 - P_m(a)) (1 - P_m(b)): both right or both wrong (their noises are
independent). A K-output task has K - m pairs m places apart out of K(K-1)/2, so the expected
pairwise agreement of the two on a K-output task is

    A_K(a, b) = sum_{m=1}^{K-1} (K - m) [P_m(a) P_m(b) + (1 - P_m(a))(1 - P_m(b))] / (K(K-1)/2)

and of a pool, the mean of A_K over its pairs of labelers (each pair labels about as many
tasks together as any other, as the queue hands tasks out). Labeler j's noise is
sigma_j = s_j * sigma with a per-labeler multiplier s_j (skill varies); A_K falls from 1 to
1/2 as sigma grows, so one sigma per K meets any target in (1/2, 1): found by bisection.
Agreement is measured with the same pooled definition as the app's agreement summary.
"""

import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import combinations
from statistics import NormalDist

_PHI = NormalDist().cdf


def p_correct(m: int, sigma: float) -> float:
    """Probability that a labeler with noise sigma orders two outputs m places apart right."""
    return _PHI(m / (sigma * math.sqrt(2.0)))


def pair_agreement(k: int, sigma_a: float, sigma_b: float) -> float:
    """Expected pairwise agreement of two labelers on a K-output task (formula above)."""
    total = 0.0
    for m in range(1, k):
        pa, pb = p_correct(m, sigma_a), p_correct(m, sigma_b)
        total += (k - m) * (pa * pb + (1.0 - pa) * (1.0 - pb))
    return total / (k * (k - 1) / 2)


def accuracy(k: int, sigma: float) -> float:
    """Expected share of a K-output task's pairs a labeler orders as the hidden preference."""
    return sum((k - m) * p_correct(m, sigma) for m in range(1, k)) / (k * (k - 1) / 2)


def pool_agreement(k: int, sigmas: Sequence[float]) -> float:
    """Expected pooled agreement of a pool: the mean over its pairs of labelers."""
    if len(sigmas) == 1:
        return pair_agreement(k, sigmas[0], sigmas[0])
    pairs = list(combinations(sigmas, 2))
    return sum(pair_agreement(k, a, b) for a, b in pairs) / len(pairs)


def calibrate(target: float, k: int, multipliers: Sequence[float] = (1.0,)) -> float:
    """The base sigma at which a pool with these noise multipliers agrees `target` on
    K-output tasks."""
    if not 0.5 < target < 1.0:
        raise ValueError(f"a target agreement must be between 0.5 and 1, not {target}")
    if k < 2:
        raise ValueError("a task needs at least two outputs to agree on")
    # Cut a large pool to a spread sample: the mean over pairs changes little, the cost a lot.
    ms = sorted(multipliers)
    if len(ms) > 40:
        ms = [ms[round(i * (len(ms) - 1) / 39)] for i in range(40)]
    lo, hi = math.log(1e-4), math.log(1e4)  # agreement falls as log sigma rises
    for _ in range(80):
        mid = (lo + hi) / 2
        if pool_agreement(k, [s * math.exp(mid) for s in ms]) > target:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


class Noise:
    """The pool's noise: one calibrated base sigma per task size, times each multiplier."""

    def __init__(self, target: float, multipliers: Sequence[float]) -> None:
        self.target = target
        self.multipliers = tuple(multipliers) or (1.0,)
        self._sigma = lru_cache(maxsize=None)(self._calibrate)
        calibrate(target, 2, self.multipliers)  # refuse a bad target at once

    def _calibrate(self, k: int) -> float:
        return calibrate(self.target, k, self.multipliers)

    def sigma(self, k: int, multiplier: float = 1.0) -> float:
        """Noise of a labeler with this multiplier on K-output tasks."""
        return self._sigma(k) * multiplier
