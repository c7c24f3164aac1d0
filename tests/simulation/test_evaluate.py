"""The loop's measures: win rates with their confidence interval, and RM accuracy."""

import random

from simulation import labelers as decide
from simulation.evaluate import rm_accuracy, win_rate
from simulation.judges import LetterRule, true_order


def test_win_rate_counts_ties_half_and_is_significant_only_with_enough_prompts():
    judge = LetterRule("e")
    prompts = ["p"] * 4
    result = win_rate(judge, prompts, ["eee", "eee", "abc", "same"], ["abc", "abc", "eee", "same"])
    assert result.rate == (1 + 1 + 0 + 0.5) / 4 and result.ties == 1 and result.n == 4
    assert not result.significant  # 4 prompts prove nothing
    many = win_rate(judge, ["p"] * 100, ["eee"] * 80 + ["abc"] * 20, ["abc"] * 80 + ["eee"] * 20)
    assert many.rate == 0.8 and many.significant and 0.7 < many.lo < 0.8 < many.hi < 0.9
    even = win_rate(judge, ["p"] * 100, ["eee"] * 50 + ["abc"] * 50, ["abc"] * 50 + ["eee"] * 50)
    assert not even.significant and even.lo < 0.5 < even.hi


def test_rm_accuracy_against_labels_and_the_hidden_order():
    judge = LetterRule("e")
    rng = random.Random(0)
    profiles = decide.make_profiles(6, seed=0)
    noise = decide.pool_noise(0.73, profiles)
    prompts, texts, rankings, truth = {}, {}, {}, {}
    for t in range(150):
        cands = {100 * t + i: "e" * rng.randint(0, 9) + "xy" * rng.randint(1, 5) for i in range(4)}
        task = {"prompt": {"text": "p"}, "candidates": [{"id": c, "text": x}
                                                        for c, x in cands.items()]}
        prompts[t], texts[t] = "p", cands
        rankings[t] = [decide.rank_answer(judge, task, p, noise, rng)["ranking"]
                       for p in rng.sample(profiles, 2)]
        truth[t] = true_order(judge, "p", list(cands.items()))
    perfect = rm_accuracy(judge, prompts, texts, rankings, truth)
    assert perfect["vs_hidden"] == 1.0  # the hidden rule itself as the RM
    assert 0.75 < perfect["vs_labels"] < 0.95  # the labels are noisy
    wrong = rm_accuracy(LetterRule("x"), prompts, texts, rankings, truth)  # likes the opposite
    assert wrong["vs_hidden"] < 0.5 and wrong["vs_labels"] < 0.5
