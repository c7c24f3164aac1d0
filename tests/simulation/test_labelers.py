"""What a simulated labeler submits for each task kind."""

import random

import pytest

from app.labeling.models import FLAGS
from simulation import labelers as decide
from simulation.judges import LetterRule

JUDGE = LetterRule("e")
TASK = {"task_id": 1, "assignment_id": 2, "kind": "rank", "prompt": {"id": 3, "text": "p"},
        "candidates": [{"id": 10 + i, "text": "e" * i + "xyz"} for i in range(6)], "params": {}}


@pytest.fixture
def pool():
    profiles = decide.make_profiles(6, seed=0, careless=1 / 6, adversarial=1 / 6)
    return profiles, decide.pool_noise(0.73, profiles)


def test_rank_answer_is_a_partition_with_likert_falling_down_the_ranking(pool):
    profiles, noise = pool
    rng = random.Random(0)
    for profile in profiles:
        for _ in range(30):
            answer = decide.rank_answer(JUDGE, TASK, profile, noise, rng)
            order = [g[0] for g in answer["ranking"]]
            assert all(len(g) == 1 for g in answer["ranking"])
            assert sorted(order) == [c["id"] for c in TASK["candidates"]]
            likerts = [answer["ratings"][str(cid)]["likert"] for cid in order]
            assert likerts == sorted(likerts, reverse=True) and 1 <= min(likerts)
            assert max(likerts) <= 7
            for cid in order:
                rating = answer["ratings"][str(cid)]
                assert set(rating["flags"]) <= set(FLAGS)
                assert ("fails_instruction" in rating["flags"]) == (rating["likert"] <= 2)


def test_adversarial_labelers_invert_the_hidden_order(pool):
    profiles, noise = pool
    adversary = next(p for p in profiles if p.behaviour == "adversarial")
    honest = min((p for p in profiles if p.behaviour == "honest"), key=lambda p: p.noise)
    rng = random.Random(0)
    firsts = {p.behaviour: [decide.rank_answer(JUDGE, TASK, p, noise, rng)["ranking"][0][0]
                            for _ in range(100)] for p in (honest, adversary)}
    best, worst = 15, 10  # the most and the fewest e's
    assert firsts["honest"].count(best) > 50 and firsts["adversarial"].count(worst) > 50


def test_compare_answer_picks_one_of_the_pair_or_both_bad(pool):
    profiles, noise = pool
    honest = profiles[0]
    pair = dict(TASK, kind="compare", candidates=TASK["candidates"][4:])
    picks = [decide.compare_answer(JUDGE, pair, honest, noise, random.Random(i))["choice"]
             for i in range(200)]
    assert set(picks) <= {14, 15} and picks.count(15) > picks.count(14)
    bad = dict(pair, candidates=[{"id": 1, "text": "xyz"}, {"id": 2, "text": "abc"}])
    assert decide.compare_answer(JUDGE, bad, honest, noise, random.Random(0)) == {
        "choice": "both_bad"}


def test_rate_answer_follows_quality():
    honest = decide.make_profiles(1, seed=0)[0]
    rng = random.Random(0)
    good = dict(TASK, kind="rate", candidates=[{"id": 1, "text": "eerie green tree"}])
    bad = dict(TASK, kind="rate", candidates=[{"id": 1, "text": "a cat on a mat"}])
    good_mean = sum(decide.rate_answer(JUDGE, good, honest, rng)["likert"] for _ in range(50))
    bad_mean = sum(decide.rate_answer(JUDGE, bad, honest, rng)["likert"] for _ in range(50))
    assert good_mean > bad_mean + 100  # 50 answers each: at least 2 Likert points apart


def test_write_prompt_answers_are_unique_and_few_shot_has_examples():
    profile = decide.make_profiles(1)[0]
    task = {"kind": "write_prompt", "params": {"prompt_kind": "few_shot"}}
    a = decide.write_prompt_answer(task, profile, random.Random(0), "a")
    b = decide.write_prompt_answer(task, profile, random.Random(0), "b")
    assert a["text"] != b["text"] and a["prompt_kind"] == "few_shot" and a["examples"]


def test_judge_accuracy_is_the_better_outputs_mean_score_on_compare_tasks(pool):
    profiles, noise = pool  # careless judges answer "tie" now and then: it scores ½
    pair = dict(TASK, kind="compare", candidates=TASK["candidates"][4:])  # 15 is the better
    rng, trials, score = random.Random(0), 3000, {15: 1.0, "tie": 0.5, 14: 0.0}
    right = sum(score[decide.compare_answer(JUDGE, pair, p, noise, rng)["choice"]]
                for p in profiles for _ in range(trials))
    share, expected = right / (trials * len(profiles)), decide.judge_accuracy(profiles, noise)
    assert 0.5 < expected < 1
    assert abs(share - expected) < 3 * (expected * (1 - expected) / (trials * len(profiles))) ** .5
