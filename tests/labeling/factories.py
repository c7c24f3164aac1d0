"""Prompts, candidates, tasks and leases for the labeling tests."""

import hashlib
import itertools
from datetime import timedelta

from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.prompts.models import Candidate, Prompt, PromptSource, Split
from app.queue.models import Assignment, AssignmentState, Task, TaskKind

_seq = itertools.count(1)


def make_prompt(db: Session, text: str | None = None) -> Prompt:
    """A train prompt with a unique text."""
    text = text or f"Prompt number {next(_seq)}: explain something kindly."
    prompt = Prompt(text=text, text_hash=hashlib.sha256(text.encode()).hexdigest(),
                    source=PromptSource.imported, split=Split.train)
    db.add(prompt)
    db.flush()
    return prompt


def make_task(db: Session, kind: TaskKind | str = TaskKind.rank, *, k: int = 4,
              overlap: int = 1, texts: list[str] | None = None,
              params: dict | None = None) -> Task:
    """A task with its prompt and, for rank (k outputs) and rate (one), its candidates."""
    kind = TaskKind(kind)
    prompt = None if kind == TaskKind.write_prompt else make_prompt(db)
    ids: list[int] = []
    if kind in (TaskKind.rank, TaskKind.rate):
        n = 1 if kind == TaskKind.rate else k
        texts = texts or [f"Output {i} of prompt {prompt.id}." for i in range(n)]
        cands = [Candidate(prompt_id=prompt.id, text=t, model="tiny") for t in texts]
        db.add_all(cands)
        db.flush()
        ids = [c.id for c in cands]
    task = Task(kind=kind, prompt_id=prompt.id if prompt else None, candidate_ids=ids,
                required_labels=overlap, params=params or {})
    db.add(task)
    db.flush()
    return task


def lease(db: Session, user: User, task: Task, *, minutes: int = 30,
          order: list[int] | None = None) -> Assignment:
    """A live lease of this task for this user, counted as the queue counts it."""
    now = utcnow()
    assignment = Assignment(
        task_id=task.id, user_id=user.id, state=AssignmentState.leased,
        display_order=order if order is not None else list(reversed(task.candidate_ids)),
        leased_at=now, expires_at=now + timedelta(minutes=minutes),
    )
    task.leased_labels += 1
    db.add(assignment)
    db.flush()
    return assignment


def rank_body(assignment: Assignment, task: Task, *, key: str = "key-00000001",
              ranking: list[list[int]] | None = None, likert: int = 5,
              flags: list[str] | None = None) -> dict:
    """A valid rank submission (best first in candidate order unless given)."""
    return {
        "assignment_id": assignment.id, "idempotency_key": key, "seconds_spent": 42,
        "ranking": ranking if ranking is not None else [[cid] for cid in task.candidate_ids],
        "ratings": {str(cid): {"likert": likert, "flags": flags or []}
                    for cid in task.candidate_ids},
    }
