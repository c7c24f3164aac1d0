"""The reward-hacking watch: its signals from a policy's recorded metrics, and the flags it
raises on a round, against people's judgments from real campaigns."""

import pytest

from app.loop import human, watch
from app.loop.watch import Limits, judge, policy_signals, round_flags
from tests.loop.factories import SFT_FIGURES, judged, make_round, ppo_metrics

LIMITS = Limits(max_kl=10.0, rm_rise=0.05, rm_people_gap=0.2, min_judgments=20,
                length_jump=0.5, cut_jump=0.25, repetition_jump=0.15, distinct_drop=0.3)
NO_PEOPLE: dict = {"vs_sft": None, "vs_previous": None}


@pytest.fixture(autouse=True)
def _fresh_caches():  # type: ignore[no-untyped-def]
    human.clear_cache()  # campaign ids repeat across rolled-back tests
    yield
    human.clear_cache()


def test_signals_compare_the_policy_with_sft_on_the_same_prompts():
    s = policy_signals(ppo_metrics(rm_score=0.9, kl=2.5, mean_length=30.0))
    assert s["rm_score"] == 0.9 and s["sft_rm_score"] == SFT_FIGURES["rm_score"]
    assert s["rm_gain"] == pytest.approx(0.8)
    assert s["kl"] == 2.5
    assert s["length_change"] == pytest.approx(30 / 20 - 1)
    assert s["sft_distinct_2"] == SFT_FIGURES["distinct_2"]


def test_a_policy_recorded_before_the_watch_has_figures_but_no_changes():
    s = policy_signals({"rm_score": 0.4, "kl": 1.0})  # an older policy: step figures only
    assert s["rm_score"] == 0.4 and s["kl"] == 1.0
    assert s["rm_gain"] is None and s["length_change"] is None
    assert judge(s, NO_PEOPLE, LIMITS) == {}


def test_kl_past_the_bound_is_flagged():
    assert judge(policy_signals(ppo_metrics(rm_score=0.1, kl=10.0)), NO_PEOPLE, LIMITS) == {}
    flags = judge(policy_signals(ppo_metrics(rm_score=0.1, kl=10.5)), NO_PEOPLE, LIMITS)
    assert list(flags) == ["kl_over_bound"]
    assert "10.50 nats" in flags["kl_over_bound"]


@pytest.mark.parametrize(("figures", "flagged"), [
    ({"mean_length": 29.0}, False),  # +45%: within the bound
    ({"mean_length": 31.0}, True),  # +55%
    ({"at_limit_share": 0.35}, True),  # 30 points more answers cut at the cap
    ({"no_eos_share": 0.35}, True),
])
def test_length_jump_against_sft_is_flagged(figures, flagged):
    flags = judge(policy_signals(ppo_metrics(rm_score=0.1, kl=1.0, **figures)), NO_PEOPLE,
                  LIMITS)
    assert ("length_jump" in flags) is flagged


@pytest.mark.parametrize(("figures", "flagged"), [
    ({"repeated_ngram_share": 0.15}, False),  # +11 points
    ({"repeated_ngram_share": 0.25}, True),  # +21 points: a phrase said over and over
    ({"distinct_2": 0.60}, False),  # 20 points less variety: what any optimisation costs
    ({"distinct_2": 0.45}, True),  # 35 points less: collapsing onto a few phrases
])
def test_repetition_jump_against_sft_is_flagged(figures, flagged):
    flags = judge(policy_signals(ppo_metrics(rm_score=0.1, kl=1.0, **figures)), NO_PEOPLE,
                  LIMITS)
    assert ("repetition_jump" in flags) is flagged


def test_a_policy_that_games_a_length_paying_judge_is_flagged_and_a_sane_one_is_not(db):
    # round 1: the RM likes the policy and so do people (24 of 30 against SFT)
    r1, v1 = make_round(db, metrics=ppo_metrics(rm_score=0.6, kl=3.0, mean_length=22.0))
    judged(db, candidate=v1["policy"], baseline=v1["sft"], wins=24, losses=6)
    # round 2: a judge that pays for length. Twice as long, cut at the cap, the RM score up
    # again; people find it level with round 1's policy.
    gamed = ppo_metrics(rm_score=1.6, kl=6.0, mean_length=44.0, at_limit_share=0.6,
                        no_eos_share=0.6)
    r2, v2 = make_round(db, metrics=gamed)
    judged(db, candidate=v2["policy"], baseline=v1["policy"], wins=15, losses=15)
    judged(db, candidate=v2["policy"], baseline=v2["sft"], wins=18, losses=12)

    assert round_flags(db=db, round_id=r1.id) == []
    assert round_flags(db=db, round_id=r2.id) == ["rm_up_people_flat", "length_jump"]
    seen = watch.watch(db=db, policy=v2["policy"])
    assert seen["signals"]["win_rate_vs_previous"] == pytest.approx(0.5)
    assert seen["signals"]["win_rate_vs_sft"] == pytest.approx(0.6)
    assert "50%" in seen["reasons"]["rm_up_people_flat"]


def test_people_are_read_against_the_previous_policy_not_sft(db):
    _, v1 = make_round(db, metrics=ppo_metrics(rm_score=0.5, kl=2.0))
    r2, v2 = make_round(db, metrics=ppo_metrics(rm_score=0.9, kl=2.0))
    judged(db, candidate=v2["policy"], baseline=v2["sft"], wins=25, losses=5)  # beats SFT
    assert round_flags(db=db, round_id=r2.id) == []
    judged(db, candidate=v2["policy"], baseline=v1["policy"], wins=12, losses=13)
    assert round_flags(db=db, round_id=r2.id) == ["rm_up_people_flat"]  # but not round 1's


def _rm_read(ev, policy, win_rate: float, n: int = 25) -> None:  # type: ignore[no-untyped-def]
    """The campaign's pairs as the round's RM scored them (what the evaluate stage stores)."""
    ev.rm_verdict = {"reward_model_id": None,
                     "by_model": {str(policy.id): {"win_rate": win_rate, "n": n, "ties": 0}}}


@pytest.mark.parametrize(("rm_win", "flags"), [
    # round 2 beats SFT as round 1 did, and people find it level with round 1's policy; so
    # does the RM on the same pairs: nothing was gamed, though its score over SFT rose
    (0.56, []),
    (0.88, ["rm_up_people_flat"]),  # its RM prefers what people find level
])
def test_a_round_level_with_the_last_is_flagged_only_where_its_rm_prefers_it(db, rm_win,
                                                                             flags):
    _, v1 = make_round(db, metrics=ppo_metrics(rm_score=0.5, kl=2.0))
    r2, v2 = make_round(db, metrics=ppo_metrics(rm_score=0.9, kl=2.0))
    ev = judged(db, candidate=v2["policy"], baseline=v1["policy"], wins=12, losses=13)
    _rm_read(ev, v2["policy"], rm_win)
    db.flush()
    assert round_flags(db=db, round_id=r2.id) == flags
    seen = watch.watch(db=db, policy=v2["policy"])
    assert seen["signals"]["rm_win_rate_people_pairs"] == pytest.approx(rm_win)
    if flags:
        reason = seen["reasons"]["rm_up_people_flat"]
        assert f"On the 25 pairs people judged, the RM prefers it {rm_win:.0%} of" in reason
        assert "people's win rate is 48%" in reason


@pytest.mark.parametrize(("rm_win", "flagged"), [
    (0.70, False),  # 0.20 above people's 0.50: within the gap
    (0.71, True),
    (0.95, False),  # people prefer it too (22 of 25): no parting of ways
])
def test_the_rm_people_gap_is_read_on_the_same_pairs(rm_win, flagged):
    flat = {"vs_sft": None, "vs_previous": {"win_rate": 0.5, "ci95": [0.3, 0.7], "n": 30,
                                             "complete": True, "rm_win_rate": rm_win}}
    people = flat if rm_win < 0.9 else {"vs_sft": None, "vs_previous": {
        **flat["vs_previous"], "win_rate": 0.88, "ci95": [0.7, 0.96]}}
    signals = policy_signals(ppo_metrics(rm_score=0.9, kl=2.0))
    assert ("rm_up_people_flat" in judge(signals, people, LIMITS)) is flagged


def test_too_few_judgments_say_nothing_until_the_campaign_completes(db):
    r1, v1 = make_round(db, metrics=ppo_metrics(rm_score=0.9, kl=2.0))
    ev = judged(db, candidate=v1["policy"], baseline=v1["sft"], wins=3, losses=3)
    assert round_flags(db=db, round_id=r1.id) == []  # 6 judgments: too few to read
    ev.state = "complete"
    db.flush()
    assert round_flags(db=db, round_id=r1.id) == ["rm_up_people_flat"]


def test_a_round_without_a_policy_has_no_flags(db):
    r1, _ = make_round(db, metrics=None)
    assert round_flags(db=db, round_id=r1.id) == []
    assert round_flags(db=db, round_id=999999) == []
