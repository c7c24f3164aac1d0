"""What one simulated labeler answers for a task: pure functions of the task, the judge,
the labeler's profile and a random source (no HTTP here: see pool.py).

Honest labelers rank by the hidden preference seen through their calibrated noise
(noise.py); careless ones answer at random; adversarial ones invert what they perceive.
Likert scores and flags follow the labeler's own ranking, so a rank submission never rates
an output above one it ranked higher.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from simulation.judges import Judge, true_order
from simulation.noise import Noise, p_correct

Behaviour = Literal["honest", "careless", "adversarial"]
KINDS = ("demonstrate", "rank", "rate", "write_prompt", "compare")
# A Likert score at or below this flags the output as failing the instruction.
FAIL_LIKERT = 2


@dataclass(frozen=True)
class Profile:
    """One simulated labeler: behaviour, noise multiplier (1 = typical), writing skill."""

    index: int
    behaviour: Behaviour
    noise: float
    skill: float


def make_profiles(n: int, *, seed: int = 0, spread: float = 0.35, careless: float = 0.0,
                  adversarial: float = 0.0) -> list[Profile]:
    """n labelers: noise multipliers log-normal with this spread (skill varies), and the
    given shares of careless and adversarial labelers (the last ones of the pool)."""
    rng = random.Random(seed)
    n_careless, n_adversarial = round(n * careless), round(n * adversarial)
    n_honest = n - n_careless - n_adversarial
    if n_honest < 1:
        raise ValueError("the pool needs at least one honest labeler")
    profiles = []
    for i in range(n):
        z = rng.gauss(0.0, 1.0)
        behaviour: Behaviour = ("honest" if i < n_honest else
                                "careless" if i < n_honest + n_careless else "adversarial")
        profiles.append(Profile(index=i, behaviour=behaviour, noise=math.exp(spread * z),
                                skill=0.5 + 0.5 * NormalDist().cdf(-z)))
    return profiles


def pool_noise(target: float, profiles: Sequence[Profile]) -> Noise:
    """Noise calibrated so the pool's honest labelers agree `target` with each other."""
    return Noise(target, [p.noise for p in profiles if p.behaviour == "honest"])


def judge_accuracy(profiles: Sequence[Profile], noise: Noise) -> float:
    """The better output's mean score (1 when picked, ½ for a tie) on compare tasks of two
    outputs the hidden rule orders, judged by the pool's labelers in turn: an honest judge's
    chance of seeing two outputs one place apart the right way round, ½ for a careless one,
    the complement for an adversarial one. A policy the rule prefers on a share h of the
    prompts is then judged the winner on a·h + (1 − a)(1 − h) of them."""
    def right(p: Profile) -> float:
        seen = p_correct(1, noise.sigma(2, p.noise))
        return {"honest": seen, "careless": 0.5, "adversarial": 1.0 - seen}[p.behaviour]

    return sum(right(p) for p in profiles) / len(profiles)


def perceived_order(order: Sequence[int], sigma: float, rng: random.Random) -> list[int]:
    """The hidden order (best first) as a labeler with noise sigma perceives it."""
    utility = {cid: -place + sigma * rng.gauss(0.0, 1.0) for place, cid in enumerate(order)}
    return sorted(order, key=lambda cid: -utility[cid])


def _order(judge: Judge, task: dict[str, Any], profile: Profile, noise: Noise,
           rng: random.Random) -> list[int]:
    """The labeler's ranking of the task's outputs, best first (strict)."""
    cands = [(c["id"], c["text"]) for c in task["candidates"]]
    if profile.behaviour == "careless":
        ids = [cid for cid, _ in cands]
        rng.shuffle(ids)
        return ids
    truth = true_order(judge, _prompt(task), cands)
    seen = perceived_order(truth, noise.sigma(len(cands), profile.noise), rng)
    return seen[::-1] if profile.behaviour == "adversarial" else seen


def _prompt(task: dict[str, Any]) -> str:
    return (task.get("prompt") or {}).get("text", "")


def _likert(quality: float, rng: random.Random, profile: Profile) -> int:
    if profile.behaviour == "careless":
        return rng.randint(3, 5)
    if profile.behaviour == "adversarial":
        quality = 1.0 - quality
    return max(1, min(7, round(1 + 6 * quality + rng.gauss(0.0, 0.6 * profile.noise))))


def _flags(likert: int) -> list[str]:
    return ["fails_instruction"] if likert <= FAIL_LIKERT else []


def rank_answer(judge: Judge, task: dict[str, Any], profile: Profile, noise: Noise,
                rng: random.Random) -> dict[str, Any]:
    """`ranking` (one output per place) and `ratings` whose Likert scores never rise down
    the ranking, with flags that follow the scores."""
    order = _order(judge, task, profile, noise, rng)
    texts = {c["id"]: c["text"] for c in task["candidates"]}
    quality = judge.scores(_prompt(task), [texts[cid] for cid in order])
    # The labeler's scores for the outputs, sorted high to low down its own ranking.
    likerts = sorted((_likert(q, rng, profile) for q in quality), reverse=True)
    return {
        "ranking": [[cid] for cid in order],
        "ratings": {str(cid): {"likert": lk, "flags": _flags(lk)}
                    for cid, lk in zip(order, likerts, strict=True)},
    }


def rate_answer(judge: Judge, task: dict[str, Any], profile: Profile,
                rng: random.Random) -> dict[str, Any]:
    """A Likert score of the single output, and flags that follow it."""
    quality = judge.scores(_prompt(task), [task["candidates"][0]["text"]])[0]
    likert = _likert(quality, rng, profile)
    return {"likert": likert, "flags": _flags(likert), "comment": ""}


def compare_answer(judge: Judge, task: dict[str, Any], profile: Profile, noise: Noise,
                   rng: random.Random) -> dict[str, Any]:
    """`choice`: the output the labeler prefers, "both_bad" when both fail the rule
    outright, "tie" from careless labelers now and then."""
    if profile.behaviour == "careless" and rng.random() < 0.2:
        return {"choice": "tie"}
    texts = [c["text"] for c in task["candidates"]]
    if profile.behaviour != "careless" and max(judge.scores(_prompt(task), texts)) <= 0.0:
        return {"choice": "both_bad"}
    return {"choice": _order(judge, task, profile, noise, rng)[0]}


def demonstrate_answer(judge: Judge, task: dict[str, Any], profile: Profile,
                       rng: random.Random) -> dict[str, Any]:
    """A written response that follows the rule as well as the labeler's skill allows."""
    skill = 0.0 if profile.behaviour != "honest" else profile.skill
    return {"text": judge.demonstrate(_prompt(task), rng, skill)}


TOPICS = ("a lighthouse", "the moon", "a garden", "rainy days", "a robot", "the river",
           "a birthday", "the city at night", "an old teacher", "a lost dog")
ASKS = ("Write a short poem about {}.", "Explain {} to a child.", "List three facts about {}.",
         "Describe {} in one sentence.", "Tell a story about {}.")


def write_prompt_answer(task: dict[str, Any], profile: Profile, rng: random.Random,
                        serial: str) -> dict[str, Any]:
    """A new prompt of the kind the task asks for; `serial` keeps it unique (the app
    refuses a duplicate prompt)."""
    kind = (task.get("params") or {}).get("prompt_kind", "plain")
    text = f"{rng.choice(ASKS).format(rng.choice(TOPICS))} (#{serial})"
    body: dict[str, Any] = {"text": text, "prompt_kind": kind}
    if kind == "few_shot":
        body["examples"] = [
            {"input": f"Describe {t}.", "output": f"{t.capitalize()} is lovely."}
            for t in rng.sample(TOPICS, 2)
        ]
    return body
