"""The noise model: its agreement formula, the calibration, and the agreement a simulated
pool actually achieves (Monte Carlo, seeded)."""

import random

import pytest

from simulation import labelers as decide
from simulation.judges import LetterRule
from simulation.noise import accuracy, calibrate, pair_agreement, pool_agreement
from simulation.report import accuracy_vs, pooled_agreement


def test_agreement_runs_from_one_to_a_half_as_noise_grows():
    assert pair_agreement(4, 1e-3, 1e-3) == pytest.approx(1.0)
    assert pair_agreement(4, 1e3, 1e3) == pytest.approx(0.5, abs=1e-3)
    values = [pair_agreement(5, s, s) for s in (0.1, 0.5, 1, 2, 5)]
    assert values == sorted(values, reverse=True)


def test_agreement_is_both_right_or_both_wrong():
    # K = 2: one pair, one place apart; a labeler is right with p = Phi(1 / (sigma sqrt 2)).
    p = accuracy(2, 1.0)
    assert pair_agreement(2, 1.0, 1.0) == pytest.approx(p * p + (1 - p) * (1 - p))


@pytest.mark.parametrize("k", [2, 4, 9])
@pytest.mark.parametrize("target", [0.6, 0.73, 0.9])
def test_calibration_meets_the_target(k, target):
    multipliers = [0.7, 1.0, 1.4, 2.0]
    sigma = calibrate(target, k, multipliers)
    assert pool_agreement(k, [m * sigma for m in multipliers]) == pytest.approx(target, abs=1e-6)


@pytest.mark.parametrize("target", [0.5, 1.0, 0.2])
def test_calibration_refuses_an_unreachable_target(target):
    with pytest.raises(ValueError, match="between 0.5 and 1"):
        calibrate(target, 4)


def _simulate(profiles, target, tasks, k, seed=0):
    """Each task ranked by two labelers drawn from the pool, as the queue's overlap does."""
    rng = random.Random(seed)
    judge, noise = LetterRule("e"), decide.pool_noise(target, profiles)
    rankings, truth = {}, {}
    for t in range(tasks):
        task = {"prompt": {"id": t, "text": "p"},
                "candidates": [{"id": i, "text": "e" * i + "a" * (9 - i)} for i in range(k)]}
        pair = rng.sample(profiles, 2)
        rankings[t] = [decide.rank_answer(judge, task, p, noise, rng)["ranking"] for p in pair]
        truth[t] = sorted(range(k), reverse=True)
    return rankings, truth


@pytest.mark.parametrize("target,k", [(0.73, 4), (0.73, 7), (0.62, 5), (0.85, 4)])
def test_simulated_pairs_achieve_the_target_agreement(target, k):
    profiles = decide.make_profiles(12, seed=3)
    rankings, truth = _simulate(profiles, target, tasks=400, k=k)
    achieved, n = pooled_agreement(rankings)
    assert n == 400 * k * (k - 1) // 2
    assert achieved == pytest.approx(target, abs=0.03)
    # Each labeler agrees with the hidden preference more than with another noisy labeler.
    assert accuracy_vs(truth, rankings) > achieved


def test_careless_and_adversarial_labelers_pull_agreement_down():
    honest = decide.make_profiles(10, seed=1)
    mixed = decide.make_profiles(10, seed=1, careless=0.2, adversarial=0.2)
    assert [p.behaviour for p in mixed].count("adversarial") == 2
    base, _ = pooled_agreement(_simulate(honest, 0.73, tasks=300, k=4)[0])
    worse, _ = pooled_agreement(_simulate(mixed, 0.73, tasks=300, k=4)[0])
    assert worse < base - 0.05


def test_skill_varies_across_the_pool():
    profiles = decide.make_profiles(50, seed=0)
    noises = sorted(p.noise for p in profiles)
    assert noises[-1] / noises[0] > 1.8
    # A noisier labeler writes worse: skill falls as the noise multiplier rises.
    by_noise = sorted(profiles, key=lambda p: p.noise)
    assert by_noise[0].skill > by_noise[-1].skill
