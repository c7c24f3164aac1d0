"""Demo data for a first run: one user per role and a project in the toy English that the
offline tiny model was pretrained on (training/toy_english.py), big enough for every round
minimum once its tasks are labeled, with labeling work of every kind."""

import os
import random
import secrets
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import app.models  # noqa: F401 - every table, so foreign keys resolve outside the web app
from app.auth import service as auth
from app.auth.models import Role, User
from app.db import session_scope
from app.prompts import service as prompts_service
from app.prompts.models import Candidate, Prompt, PromptKind, PromptSource, Split
from training import toy_english  # standard library only

# A demo project big enough for a round that learns: the importer splits prompts about
# 80/10/10 by end user, so 1200 prompts give ~960 train prompts (about 580 rank tasks and 380
# demonstrate tasks; PPO rolls out on them), ~120 valid ones (PPO keeps its best step by them)
# and ~120 test ones (a campaign of 60 judges tightly enough to read a win over SFT). The RM
# is what the data size buys. Its held-out accuracy against the labelers, cross-validated over
# three held-out fifths (bench/tune_rm.py on a bench/bench_first_loop.py run), with the
# labelers' own agreement at 0.73: 300 prompts, half ranked: 0.60-0.62; 600 prompts, 60 %
# ranked: 0.663 ± 0.011 (0.733 against the hidden rule); 1200: 0.724 ± 0.009 (0.806).
DEMO_PROMPTS = 1200
RANK_SHARE = 0.6  # of the train prompts, ranked; the rest get a demonstrate task
DEMO_K = (4, 9)  # outputs per rank task: the paper's K


def toy_prompts(n: int, rng: random.Random) -> list[str]:
    """n distinct prompts in the toy English (the importer merges duplicates)."""
    seen: dict[str, None] = {}
    for _ in range(50 * n):
        if len(seen) == n:
            break
        seen.setdefault(toy_english.prompt(rng)[0], None)
    return list(seen)


def toy_outputs(prompt: str, k: int, rng: random.Random) -> list[str]:
    """k distinct sample outputs for a prompt that differ in every way a preference can look
    at: length (one to five sentences), whether and where they take up the prompt's topic,
    and their words; so whatever the labelers prefer, a reward model has signal to learn."""
    topic = toy_english.topic_of(prompt)
    outputs: dict[str, None] = {}
    while len(outputs) < k:
        n = rng.randint(1, 5)
        about = topic if topic in toy_english.NOUNS and rng.random() < 0.5 else None
        sentences = [toy_english.sentence(rng, about if i == 0 else None) for i in range(n)]
        if about and n > 1 and rng.random() < 0.5:  # the topic comes up late
            sentences.append(sentences.pop(0))
        outputs.setdefault(" ".join(sentences), None)
    return list(outputs)


def seed_project(db: Session, *, n_prompts: int = DEMO_PROMPTS, rank_share: float = RANK_SHARE,
                 k: tuple[int, int] = DEMO_K, overlap: int = 2, seed: int = 0,
                 end_user_prefix: str = "demo-user",
                 demonstrate_all: bool = False) -> dict[str, int]:
    """Import toy-English prompts (split by end user), rank tasks with K outputs on some of
    the train prompts and demonstrate tasks on the rest (on all of them with
    `demonstrate_all`); counts of what was made."""
    from app.queue import service as queue

    rng = random.Random(seed)
    texts = toy_prompts(n_prompts, rng)
    prompts_service.import_objects(db=db, source=PromptSource.imported, objects=[
        {"text": t, "end_user_id": f"{end_user_prefix}-{seed}-{i}"} for i, t in enumerate(texts)])
    made = list(db.scalars(select(Prompt).where(Prompt.text.in_(texts)).order_by(Prompt.id)))
    train = [p for p in made if p.split == Split.train]
    ranked = train[: round(len(train) * rank_share)]
    for prompt in ranked:
        cands = [Candidate(prompt_id=prompt.id, text=text, model="demo", sampling_params={})
                 for text in toy_outputs(prompt.text, rng.randint(*k), rng)]
        db.add_all(cands)
        db.flush()
        queue.create_rank_task(db=db, prompt_id=prompt.id, candidate_ids=[c.id for c in cands],
                               overlap=overlap)
    demonstrated = train if demonstrate_all else train[len(ranked):]
    queue.create_demonstrate_tasks(db=db, prompt_ids=[p.id for p in demonstrated], overlap=1)
    by_split = Counter(Split(p.split).value for p in made)
    return {"prompts": len(made), "rank_tasks": len(ranked),
            "demonstrate_tasks": len(demonstrated),
            **{f"{name}_prompts": by_split.get(name, 0) for name in ("train", "valid", "test")}}


def seed(*, creds_file: Path) -> int:
    """Create the demo users and a project that can run a round once its tasks are labeled
    (on an empty database); returns the prompts created."""
    with session_scope() as db:
        if db.scalar(select(func.count()).select_from(User)):
            return 0
        lines = []
        for role in (Role.admin, Role.researcher, Role.labeler):
            password = secrets.token_urlsafe(9)
            email = f"{role.value}@example.com"
            auth.create_user(db=db, email=email, password=password, role=role,
                             name=f"Demo {role.value}")
            lines.append(f"{role.value:<11} {email:<26} {password}")
        # Through the importer and the queue, so the demo obeys the same rules as real data.
        made = seed_project(db=db)
        _seed_other_work(db)
    creds_file.parent.mkdir(parents=True, exist_ok=True)
    creds_file.write_text("\n".join(lines) + "\n")
    os.chmod(creds_file, 0o600)
    return made["prompts"]


def _seed_other_work(db: Session) -> None:
    """A few rate and write-prompt tasks, so every screen has something to show."""
    from app.queue import service as queue

    first = db.scalars(select(Candidate).order_by(Candidate.id).limit(3))
    queue.create_rate_tasks(db=db, candidate_ids=[c.id for c in first], overlap=2)
    for kind in (PromptKind.plain, PromptKind.few_shot):
        queue.create_write_prompt_tasks(db=db, prompt_kind=kind, count=1)
