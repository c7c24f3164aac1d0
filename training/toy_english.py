"""A toy English: a few hundred real words and a small grammar (standard library only).

The offline tiny base model is pretrained on it (training/tiny.py), the demo's prompts and
sample outputs are written in it (app/demo.py), and the simulated labelers write their
demonstrations in it, so the model that people rank writes words they can read, and a
preference about content (a topic, a tone, a length) is something it can learn.

    the quiet teacher often helps the small child near the river.
    tell me about the old garden.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

NOUNS = tuple("""
cat dog bird fish horse sheep goat cow bee deer fox owl frog mouse rabbit duck
teacher child farmer baker doctor painter singer sailor queen king friend neighbour
robot model river garden city village forest mountain island lake sea beach street
house school market library bridge tower castle road field hill tree flower seed
apple bread cheese soup tea letter book song picture map boat train bicycle
lamp window door table chair clock bell kite ball hat coat basket
sun moon star cloud rain snow wind storm morning evening night day week
""".split())
ADJECTIVES = tuple("""
small big little tall short old young new red green blue yellow white black brown
quiet loud happy sad calm busy clever kind gentle brave shy proud lazy eager
bright dark warm cold sweet fresh clean deep free friendly careful curious
tiny huge soft hard quick slow early late lovely simple strange famous
""".split())
# Transitive verbs in the third person singular: "the cat sees the bird".
VERBS = tuple("""
sees likes finds helps follows answers draws builds paints reads writes carries
visits watches meets greets feeds cleans opens closes fixes makes bakes sings
teaches remembers loves needs keeps wants brings calls holds
""".split())
# Intransitive verbs: "the bird sleeps".
INTRANSITIVE = tuple("""
sleeps sings runs walks waits smiles laughs rests dances swims plays works listens
dreams grows shines falls
""".split())
ADVERBS = tuple("""
slowly quickly gladly often rarely always never sometimes quietly happily gently
softly early late together again still
""".split())
# The words of a cheerful answer and of a gloomy one (the simulator's `positive` rule).
POSITIVE = tuple("""
happy calm clever kind gentle brave friendly careful lovely bright warm sweet fresh clean
eager gladly happily gently softly smiles laughs loves helps dances
""".split())
NEGATIVE = tuple("""
sad lazy cold dark strange loud proud hard slow shy never
""".split())
PREPOSITIONS = ("in", "near", "under", "behind", "beside", "over", "by", "with", "from")
DETERMINERS = ("the", "a", "every", "one", "my", "our", "this", "that")
# The words of the instructions that prompts are written with.
INSTRUCTION_WORDS = tuple("""
tell me about write sentence short story describe what does do and is it an are
give please how why who where when explain poem line lines
""".split())
WORDS = frozenset((*NOUNS, *ADJECTIVES, *VERBS, *INTRANSITIVE, *ADVERBS, *PREPOSITIONS,
                   *DETERMINERS, *INSTRUCTION_WORDS, "an", "the", "and", "but", "then", "is",
                   "very", "so"))

_WORD = re.compile(r"[a-z']+")


def words_of(text: str) -> list[str]:
    """The words of a text, lower-cased (letters and apostrophes)."""
    return _WORD.findall(text.lower())


def real_word_share(texts: Sequence[str]) -> float:
    """The share of the words in these texts that are words of the toy English (1.0 for no
    words at all: nothing unreadable was written)."""
    words = [w for t in texts for w in words_of(t)]
    return sum(w in WORDS for w in words) / len(words) if words else 1.0


def _noun_phrase(rng: random.Random, noun: str | None = None) -> str:
    noun = noun or rng.choice(NOUNS)
    det = rng.choice(DETERMINERS)
    adj = rng.choice(ADJECTIVES) if rng.random() < 0.5 else ""
    head = f"{adj} {noun}".strip()
    if det == "a" and head[0] in "aeiou":
        det = "an"
    return f"{det} {head}"


def sentence(rng: random.Random, about: str | None = None) -> str:
    """One sentence of the grammar, its subject `about` (a noun) when given."""
    subject = _noun_phrase(rng, about)
    adverb = f"{rng.choice(ADVERBS)} " if rng.random() < 0.3 else ""
    shape = rng.randrange(5)
    if shape == 0:
        body = f"{subject} {adverb}{rng.choice(VERBS)} {_noun_phrase(rng)}"
    elif shape == 1:
        body = f"{subject} {adverb}{rng.choice(INTRANSITIVE)} {rng.choice(PREPOSITIONS)} " \
               f"{_noun_phrase(rng)}"
    elif shape == 2:
        body = f"{subject} is {rng.choice(('very ', '', ''))}{rng.choice(ADJECTIVES)}"
    elif shape == 3:
        body = f"{subject} {adverb}{rng.choice(VERBS)} {_noun_phrase(rng)} and " \
               f"{rng.choice(INTRANSITIVE)}"
    else:
        body = f"{subject} {rng.choice(VERBS)} {_noun_phrase(rng)} " \
               f"{rng.choice(PREPOSITIONS)} {_noun_phrase(rng)}"
    return body + "."


def paragraph(rng: random.Random, n: int | None = None, about: str | None = None) -> str:
    """n sentences (2..4 when not given), the first about `about` when given."""
    n = n or rng.randint(2, 4)
    return " ".join(sentence(rng, about if i == 0 else None) for i in range(n))


PROMPT_SHAPES = (
    "tell me about the {noun}.",
    "write a sentence about a {adj} {noun}.",
    "describe the {noun}.",
    "what does the {adj} {noun} do?",
    "write a short story about the {noun}.",
    "tell me about a {noun} in the {place}.",
)
PLACES = ("garden", "city", "village", "forest", "river", "school", "market", "library")


def prompt(rng: random.Random) -> tuple[str, str]:
    """A prompt of the toy English and its topic noun."""
    noun = rng.choice(NOUNS)
    text = rng.choice(PROMPT_SHAPES).format(noun=noun, adj=rng.choice(ADJECTIVES),
                                            place=rng.choice(PLACES))
    return text.replace(" a a", " an a").replace(" a e", " an e").replace(" a o", " an o"), noun


def topic_of(text: str) -> str:
    """The topic of a toy-English prompt: its first noun (else its longest word)."""
    words = words_of(text)
    nouns = [w for w in words if w in NOUNS and w not in PLACES]
    if nouns:
        return nouns[0]
    places = [w for w in words if w in NOUNS]
    return places[0] if places else (max(words, key=len) if words else "")


def corpus(n: int, seed: int = 0) -> list[str]:
    """n paragraphs of the toy English: pretraining text."""
    rng = random.Random(seed)
    return [paragraph(rng) for _ in range(n)]
