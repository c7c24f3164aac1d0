"""The output signals of the reward-hacking watch, against values worked out by hand."""

import pytest

from training.signals import (
    at_limit_share,
    distinct_n,
    mean_length,
    no_eos_share,
    output_signals,
    repeated_ngram_share,
)

EOS = 0


def test_mean_length_counts_tokens_per_response():
    assert mean_length([[5, 6, EOS], [7], [8, 9, 10, 11, EOS]]) == pytest.approx(3.0)
    assert mean_length([]) == 0.0


def test_at_limit_and_no_eos_shares():
    responses = [[5, 6, 7, 8], [5, EOS], [6, 7, 8, EOS], [9]]
    assert at_limit_share(responses, 4) == pytest.approx(2 / 4)  # the first and the third
    assert no_eos_share(responses, EOS) == pytest.approx(2 / 4)  # the first and the last


def test_repeated_ngram_share_counts_repeats_within_one_response():
    # 3-grams of 1 2 1 2 1 2: (121) (212) (121) (212): the last two repeat
    assert repeated_ngram_share([[1, 2, 1, 2, 1, 2]]) == pytest.approx(2 / 4)
    # the same phrase in two answers is not a repeat: each answer says it once
    assert repeated_ngram_share([[1, 2, 3], [1, 2, 3]]) == 0.0
    # one token said over and over: 7 3-grams, all but the first repeat
    assert repeated_ngram_share([[4] * 9]) == pytest.approx(6 / 7)
    assert repeated_ngram_share([[1, 2]]) == 0.0  # too short for a 3-gram


def test_distinct_n_over_all_responses():
    # 2-grams: (12) (23) | (12) (24) | (55) (55): 6 grams, 4 distinct
    assert distinct_n([[1, 2, 3], [1, 2, 4], [5, 5, 5]]) == pytest.approx(4 / 6)
    assert distinct_n([[1]]) == 0.0


def test_output_signals_leave_eos_out_of_repetition():
    signals = output_signals([[3, 3, 3, EOS], [3, 3, 3, 3]], eos_id=EOS, max_new_tokens=4)
    assert signals == {
        "mean_length": 4.0,
        "at_limit_share": 1.0,
        "no_eos_share": 0.5,
        # 3-grams without eos: (333) | (333) (333): the last repeats its answer's first
        "repeated_ngram_share": pytest.approx(1 / 3),
        # 2-grams: (33)(33) | (33)(33)(33): 5 grams, 1 distinct
        "distinct_2": pytest.approx(1 / 5),
    }
