"""What a policy's outputs look like, as numbers a reward hack moves: length, answers cut at
the length cap or never finished, and repetition (standard library only).

A policy that games its reward model often writes longer (a length-paying RM), runs into
the length cap, or collapses onto a few phrases the RM likes; the RM score rises while
people see no better answers. These figures, measured on the kept policy's test outputs
beside the SFT model's on the same prompts, are what the app's watch compares.

Every function takes the responses as token id lists, each cut after its first eos (the
eos included, as `sampling.response_mask` keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence

REPEAT_N = 3  # a repeated 3-gram: a phrase said again, not a common word pair
DISTINCT_N = 2  # distinct-2 (Li et al., 2016): the usual measure of lexical variety


def mean_length(responses: Sequence[Sequence[int]]) -> float:
    """Mean number of tokens per response (0 when there are none)."""
    return sum(len(r) for r in responses) / len(responses) if responses else 0.0


def at_limit_share(responses: Sequence[Sequence[int]], max_new_tokens: int) -> float:
    """Share of responses that used every token the cap allowed."""
    if not responses:
        return 0.0
    return sum(len(r) >= max_new_tokens for r in responses) / len(responses)


def no_eos_share(responses: Sequence[Sequence[int]], eos_id: int) -> float:
    """Share of responses that never wrote the end-of-sequence token (cut, not finished)."""
    if not responses:
        return 0.0
    return sum(eos_id not in r for r in responses) / len(responses)


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """The n-grams of one response, in order (none when it is shorter than n)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_share(responses: Sequence[Sequence[int]], n: int = REPEAT_N) -> float:
    """Share of all n-grams that repeat an n-gram said earlier in the same response.

    "a b a b a b" has 3-grams aba, bab, aba, bab: the last two are repeats, so 0.5; one
    token said over and over approaches 1.
    """
    total = repeats = 0
    for r in responses:
        seen: set[tuple[int, ...]] = set()
        for gram in ngrams(r, n):
            repeats += gram in seen
            seen.add(gram)
            total += 1
    return repeats / total if total else 0.0


def distinct_n(responses: Sequence[Sequence[int]], n: int = DISTINCT_N) -> float:
    """Distinct n-grams over all n-grams of all responses (1 = no n-gram ever repeats)."""
    grams = [g for r in responses for g in ngrams(r, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def output_signals(
    responses: Sequence[Sequence[int]], *, eos_id: int, max_new_tokens: int
) -> dict[str, float]:
    """Every signal of a set of responses, keyed as the policy's metrics record them."""
    # eos is where the answer ends, not part of what it says: repetition ignores it
    words = [[t for t in r if t != eos_id] for r in responses]
    return {
        "mean_length": mean_length(responses),
        "at_limit_share": at_limit_share(responses, max_new_tokens),
        "no_eos_share": no_eos_share(responses, eos_id),
        "repeated_ngram_share": repeated_ngram_share(words),
        "distinct_2": distinct_n(words),
    }
