"""Hidden preferences: what the simulated labelers like, as a quality score in [0, 1].

Built-in rules are simple enough for the tiny model to learn on CPU in minutes:

- `letter:X`  more of the letter X (its share of the letters, saturating at 50 %);
- `word:W`    more occurrences of the word W (1 - 0.5 ** count);
- `length:N`  closer to N words (1 - |n - N| / N, floored at 0);
- `keyword`   contains the prompt's keyword (its topic noun, else its longest word), the
              earlier the better;
- `positive`  a cheerful answer: more of the toy English's positive words (happy, kind,
              gently, smiles, …) than of its negative ones (sad, cold, never, …).

Any other spec is read as a reward-model directory: its scores, squashed into (0, 1), are the
preference (torch loads only then). Judges also write demonstrations that their rule likes.
A judge never sees the labelers' noise: that is simulation/noise.py.
"""

import hashlib
import math
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from training import toy_english  # standard library only

_WORD = re.compile(r"[A-Za-z']+")
# Demonstrations are written in the toy English the tiny base model was pretrained on.
VOCABULARY = tuple(sorted(toy_english.WORDS))
RULES = ("letter:X", "word:W", "length:N", "keyword", "positive")


class Judge(Protocol):
    """A hidden preference: higher quality is better; ties are broken by `tiebreak`."""

    name: str

    def scores(self, prompt: str, texts: Sequence[str]) -> list[float]:
        """Quality of each text as a response to the prompt, each in [0, 1]."""
        ...

    def demonstrate(self, prompt: str, rng: random.Random, skill: float) -> str:
        """A response written by a labeler of this skill (0..1) who follows the rule."""
        ...


class JudgeError(ValueError):
    """A judge spec that names no rule and no reward-model directory."""


def tiebreak(text: str) -> float:
    """A fixed pseudo-random number in [0, 1) for a text: it orders texts the rule ties, the
    same way for every labeler, so the hidden preference is a strict order."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def true_order(judge: Judge, prompt: str, candidates: Sequence[tuple[int, str]]) -> list[int]:
    """Candidate ids best first by the hidden preference (a strict order)."""
    quality = judge.scores(prompt, [text for _, text in candidates])
    keyed = [(q, tiebreak(text), cid) for (cid, text), q in zip(candidates, quality, strict=True)]
    return [cid for *_, cid in sorted(keyed, reverse=True)]


def prefers(judge: Judge, prompt: str, a: str, b: str) -> float:
    """1 when the hidden preference puts a above b, 0 below, 0.5 for the same text."""
    if a == b:
        return 0.5
    qa, qb = judge.scores(prompt, [a, b])
    return 1.0 if (qa, tiebreak(a)) > (qb, tiebreak(b)) else 0.0


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _sentence(rng: random.Random, n: int, about: str | None = None) -> str:
    """Toy-English sentences of about n words in all (whole sentences: at least n)."""
    out = [toy_english.sentence(rng, about)]
    while sum(len(s.split()) for s in out) < n:
        out.append(toy_english.sentence(rng))
    return " ".join(out)


def best_draft(judge: "Judge", prompt: str, rng: random.Random, skill: float,
               words: tuple[int, int] = (4, 24)) -> str:
    """What a labeler who follows the judge writes: a few toy-English drafts on the prompt's
    topic (more for a more skilled labeler), keeping the one the rule likes best."""
    topic = keyword_of(prompt)
    drafts = [_sentence(rng, rng.randint(*words),
                        topic if topic in toy_english.NOUNS and rng.random() < 0.7 else None)
              for _ in range(1 + round(8 * skill))]
    quality = judge.scores(prompt, drafts)
    return drafts[max(range(len(drafts)), key=quality.__getitem__)]


class LetterRule:
    """More of one letter: its share of the text's letters, saturating at 50 % (far above
    what people write, so a policy can keep improving on its demonstrations)."""

    def __init__(self, letter: str) -> None:
        if len(letter) != 1 or not letter.isalpha():
            raise JudgeError(f"letter:X needs one letter, not {letter!r}")
        self.letter = letter.lower()
        self.name = f"letter:{self.letter}"

    def scores(self, prompt: str, texts: Sequence[str]) -> list[float]:
        out = []
        for text in texts:
            letters = [c for c in text.lower() if c.isalpha()]
            share = letters.count(self.letter) / len(letters) if letters else 0.0
            out.append(min(1.0, share / 0.5))
        return out

    def demonstrate(self, prompt: str, rng: random.Random, skill: float) -> str:
        return best_draft(self, prompt, rng, skill)


class WordRule:
    """More occurrences of one word."""

    def __init__(self, word: str) -> None:
        if not _WORD.fullmatch(word or ""):
            raise JudgeError(f"word:W needs one word of letters, not {word!r}")
        self.word = word.lower()
        self.name = f"word:{self.word}"

    def scores(self, prompt: str, texts: Sequence[str]) -> list[float]:
        return [1.0 - 0.5 ** _words(text).count(self.word) for text in texts]

    def demonstrate(self, prompt: str, rng: random.Random, skill: float) -> str:
        if self.word in toy_english.NOUNS:  # sentences about it
            return " ".join(toy_english.sentence(rng, self.word)
                            for _ in range(1 + round(3 * skill)))
        words = _sentence(rng, rng.randint(6, 10)).rstrip(".").split()
        for _ in range(1 + round(3 * skill)):
            words.insert(rng.randrange(len(words) + 1), self.word)
        return " ".join(words) + "."


class LengthRule:
    """Closer to a target number of words."""

    def __init__(self, target: str) -> None:
        if not target.isdigit() or not 1 <= int(target) <= 500:
            raise JudgeError(f"length:N needs a number of words from 1 to 500, not {target!r}")
        self.target = int(target)
        self.name = f"length:{self.target}"

    def scores(self, prompt: str, texts: Sequence[str]) -> list[float]:
        return [max(0.0, 1.0 - abs(len(_words(t)) - self.target) / self.target) for t in texts]

    def demonstrate(self, prompt: str, rng: random.Random, skill: float) -> str:
        return best_draft(self, prompt, rng, skill, words=(1, 2 * self.target))


def keyword_of(prompt: str) -> str:
    """The prompt's keyword: its topic in the toy English (its first noun), else its
    longest word (the first of the longest)."""
    return toy_english.topic_of(prompt)


class KeywordRule:
    """Contains the prompt's keyword, the earlier the better."""

    name = "keyword"

    def scores(self, prompt: str, texts: Sequence[str]) -> list[float]:
        key = keyword_of(prompt)
        out = []
        for text in texts:
            words = _words(text)
            if not key or key not in words:
                out.append(0.0)
            else:
                out.append(0.6 + 0.4 / (1.0 + words.index(key) / 5.0))
        return out

    def demonstrate(self, prompt: str, rng: random.Random, skill: float) -> str:
        key = keyword_of(prompt)
        if key in toy_english.NOUNS:
            return best_draft(self, prompt, rng, skill)
        words = _sentence(rng, rng.randint(5, 10)).rstrip(".").split()
        if key and rng.random() < 0.5 + 0.5 * skill:
            words.insert(min(len(words), round((1.0 - skill) * rng.randint(0, 6))), key)
        return " ".join(words) + "."


class PositiveRule:
    """A cheerful answer: positive words count up, negative ones down, saturating (so a
    policy gains nothing from piling them on past a handful)."""

    name = "positive"

    def scores(self, prompt: str, texts: Sequence[str]) -> list[float]:
        out = []
        for text in texts:
            words = _words(text)
            net = sum(w in toy_english.POSITIVE for w in words) - sum(
                w in toy_english.NEGATIVE for w in words)
            out.append(0.5 + 0.5 * math.tanh(net / 2))
        return out

    def demonstrate(self, prompt: str, rng: random.Random, skill: float) -> str:
        return best_draft(self, prompt, rng, skill)


class RewardModelJudge:
    """A reward-model directory's scores, squashed into (0, 1) by a logistic function."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"rm:{path}"
        self._score: Callable[[Sequence[str], Sequence[str]], object] | None = None

    def _scorer(self) -> Callable[[Sequence[str], Sequence[str]], object]:
        if self._score is None:  # torch and transformers load here, and only here
            from training.sampling import rm_reward_fn

            self._score = rm_reward_fn(self.path)
        return self._score

    def scores(self, prompt: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        raw = self._scorer()([prompt] * len(texts), list(texts))
        return [1.0 / (1.0 + math.exp(-float(x))) for x in raw]  # type: ignore[attr-defined]

    def demonstrate(self, prompt: str, rng: random.Random, skill: float) -> str:
        # No rule to follow: write a few drafts and keep the one the model likes best, more
        # drafts for a more skilled labeler.
        return best_draft(self, prompt, rng, skill)


def make_judge(spec: str) -> Judge:
    """The judge a `--judge` spec names: a rule (see RULES) or a reward-model directory."""
    name, _, arg = spec.partition(":")
    if name == "letter":
        return LetterRule(arg)
    if name == "word":
        return WordRule(arg)
    if name == "length":
        return LengthRule(arg)
    if spec == "keyword":
        return KeywordRule()
    if spec == "positive":
        return PositiveRule()
    path = Path(spec)
    if path.is_dir():
        return RewardModelJudge(path)
    raise JudgeError(f"unknown judge {spec!r}: use one of {', '.join(RULES)} "
                     "or the directory of a reward model")
