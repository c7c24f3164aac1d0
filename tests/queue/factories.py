"""Small factories for prompts, candidates and tasks."""

import hashlib
import itertools

from sqlalchemy.orm import Session

from app.prompts.models import Candidate, Prompt, PromptSource, Split
from app.queue.models import Task, TaskKind

_seq = itertools.count(1)


def make_prompt(db: Session, text: str | None = None, *, split: Split = Split.train,
                end_user_id: str | None = None) -> Prompt:
    """A prompt with a unique text."""
    text = text or f"Prompt number {next(_seq)}: write something."
    prompt = Prompt(text=text, text_hash=hashlib.sha256(text.encode()).hexdigest(),
                    source=PromptSource.imported, end_user_id=end_user_id, split=split,
                    meta={}, pii_counts={})
    db.add(prompt)
    db.flush()
    return prompt


def make_candidates(db: Session, prompt: Prompt, n: int = 4) -> list[Candidate]:
    """n distinct model outputs for a prompt."""
    cands = [Candidate(prompt_id=prompt.id, text=f"answer {i} to {prompt.id}", model="m")
             for i in range(n)]
    db.add_all(cands)
    db.flush()
    return cands


def make_task(db: Session, kind: TaskKind = TaskKind.demonstrate, *, overlap: int = 1,
              priority: int = 0, gold: bool = False, gold_answer: object = None,
              prompt: Prompt | None = None, n_candidates: int = 4) -> Task:
    """An open task of this kind on a fresh prompt (with candidates for rank/rate)."""
    prompt = prompt or make_prompt(db)
    ids: list[int] = []
    if kind == TaskKind.rank:
        ids = [c.id for c in make_candidates(db, prompt, n_candidates)]
    elif kind == TaskKind.rate:
        ids = [make_candidates(db, prompt, 1)[0].id]
    task = Task(kind=kind, prompt_id=prompt.id if kind != TaskKind.write_prompt else None,
                candidate_ids=ids, required_labels=overlap, priority=priority, gold=gold,
                gold_answer=gold_answer, params={})
    db.add(task)
    db.flush()
    return task
