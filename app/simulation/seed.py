"""Starting work for a simulated loop on an empty deployment: prompts (which the importer
splits into train, valid and test by end user), a demonstrate task for each train prompt,
and rank tasks whose outputs vary in every way the built-in rules look at (length, share
of a letter, the prompt's keyword), so any rule has something to learn from round one."""

import random
from collections import Counter

from sqlalchemy import select

from app.simulation.judges import VOCABULARY, keyword_of
from app.simulation.labelers import ASKS, TOPICS


def _output(rng: random.Random, prompt: str) -> str:
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(2, 16))]
    if rng.random() < 0.5:  # a response that echoes the prompt's keyword, somewhere
        words.insert(rng.randrange(len(words) + 1), keyword_of(prompt))
    return " ".join(words) + "."


def seed(*, n_prompts: int = 200, rank_share: float = 0.5, k: int = 4, overlap: int = 2,
         seed: int = 0) -> dict[str, int]:
    """Import n prompts and make the work; counts of what was made."""
    import app.models  # noqa: F401 - every table, so foreign keys resolve outside the web app
    from app.db import session_scope
    from app.prompts import service as prompts
    from app.prompts.models import Candidate, Prompt, PromptSource, Split
    from app.queue import service as queue

    rng = random.Random(seed)
    texts = [f"{rng.choice(ASKS).format(rng.choice(TOPICS))} (simulated prompt {seed}-{i})"
             for i in range(n_prompts)]
    with session_scope() as db:
        prompts.import_objects(db=db, source=PromptSource.imported, objects=[
            {"text": t, "end_user_id": f"sim-user-{i}"} for i, t in enumerate(texts)])
        made = list(db.scalars(select(Prompt).where(Prompt.text.in_(texts))))
        train = [p for p in made if p.split == Split.train]
        ranked = train[: round(len(train) * rank_share)]
        for prompt in ranked:
            cands = [Candidate(prompt_id=prompt.id, text=_output(rng, prompt.text),
                               model="simulated-seed", sampling_params={}) for _ in range(k)]
            db.add_all(cands)
            db.flush()
            queue.create_rank_task(db=db, prompt_id=prompt.id,
                                   candidate_ids=[c.id for c in cands], overlap=overlap)
        queue.create_demonstrate_tasks(db=db, prompt_ids=[p.id for p in train], overlap=1)
        by_split = Counter(Split(p.split).value for p in made)
    return {"prompts": len(made), "rank_tasks": len(ranked), "demonstrate_tasks": len(train),
            **{f"{k}_prompts": v for k, v in by_split.items()}}
