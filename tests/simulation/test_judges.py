"""The built-in hidden preferences and the judge spec parser."""

import random

import pytest

from simulation.judges import (
    JudgeError,
    KeywordRule,
    LengthRule,
    LetterRule,
    WordRule,
    keyword_of,
    make_judge,
    prefers,
    true_order,
)


def test_letter_rule_prefers_more_of_the_letter():
    judge = LetterRule("e")
    low, mid, high = judge.scores("p", ["a cat on a mat", "the red dog", "eerie green tree"])
    assert low == 0.0 < mid < high <= 1.0


def test_word_rule_counts_whole_words_only():
    judge = WordRule("cat")
    none, one, two, sub = judge.scores("p", ["a dog", "a cat", "cat and cat", "catalogue"])
    assert none == sub == 0.0 and 0 < one < two


def test_length_rule_peaks_at_the_target():
    judge = LengthRule("4")
    far, near, exact, over = judge.scores("p", ["one", "one two three", "a b c d", "a b c d e"])
    assert exact == 1.0 and near > far and over < exact


def test_keyword_rule_wants_the_prompt_keyword_early():
    assert keyword_of("write a short story about the kind teacher.") == "teacher"  # toy English
    prompt = "Describe the lighthouse keeper"
    assert keyword_of(prompt) == "lighthouse"  # no toy-English noun: the longest word
    missing, late, early = KeywordRule().scores(
        prompt, ["a boat", "one two three four five six lighthouse", "lighthouse first"])
    assert missing == 0.0 < late < early


def test_true_order_is_strict_when_the_rule_ties():
    judge = WordRule("cat")
    cands = [(1, "a dog"), (2, "a cat"), (3, "no pets"), (4, "cat cat")]
    order = true_order(judge, "p", cands)
    assert order[:2] == [4, 2] and sorted(order[2:]) == [1, 3]
    assert order == true_order(judge, "p", cands[::-1])  # ties broken the same every time
    assert prefers(judge, "p", "a dog", "no pets") + prefers(judge, "p", "no pets", "a dog") == 1


@pytest.mark.parametrize("spec", ["letter:e", "word:river", "length:8", "keyword"])
def test_skilled_demonstrations_follow_the_rule_better(spec):
    judge = make_judge(spec)
    prompt = "Write a poem about the lighthouse keeper"
    rng = random.Random(1)

    def mean(skill: float) -> float:
        texts = [judge.demonstrate(prompt, rng, skill) for _ in range(200)]
        return sum(judge.scores(prompt, texts)) / len(texts)

    assert mean(1.0) > mean(0.0) + 0.1


@pytest.mark.parametrize("spec", ["letter:", "letter:ab", "word:two words", "length:0",
                                  "length:x", "nonsense", "/no/such/dir"])
def test_bad_judge_spec_is_refused(spec):
    with pytest.raises(JudgeError):
        make_judge(spec)
