"""Rows the exports read, created directly (the submit paths are tested elsewhere)."""

import itertools
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.labeling.models import Demonstration, Ranking, Rating
from app.prompts.models import Candidate, Prompt, PromptSource, Split
from app.queue.models import Assignment, AssignmentState, Task, TaskKind
from app.registry.models import ModelVersion

_seq = itertools.count(1)


def make_prompt(db: Session, text: str | None = None, *, split: str = "train",
                category: str | None = "generation", end_user_id: str | None = "u1",
                created_at: datetime | None = None) -> Prompt:
    """A prompt with a unique hash."""
    n = next(_seq)
    prompt = Prompt(text=text or f"Prompt number {n}: write a haiku about <b>tags</b> & \"quotes\"",
                    text_hash=f"export-test-{n}-{id(db)}", source=PromptSource.imported,
                    end_user_id=end_user_id, category=category, split=Split(split),
                    created_at=created_at or utcnow())
    db.add(prompt)
    db.flush()
    return prompt


def make_model_version(db: Session, name: str = "policy-1") -> ModelVersion:
    """A policy model version."""
    version = ModelVersion(kind="policy", name=name, path=f"/models/{name}")
    db.add(version)
    db.flush()
    return version


def make_candidates(db: Session, prompt: Prompt, k: int,
                    version: ModelVersion | None = None) -> list[Candidate]:
    """K model outputs for a prompt."""
    cands = [Candidate(prompt_id=prompt.id, text=f"answer {i} to prompt {prompt.id} ✓",
                       model=version.name if version else "gpt-test",
                       model_version_id=version.id if version else None)
             for i in range(k)]
    db.add_all(cands)
    db.flush()
    return cands


def make_task(db: Session, prompt: Prompt, kind: TaskKind,
              candidates: list[Candidate] | None = None) -> Task:
    """An open task on a prompt."""
    task = Task(kind=kind, prompt_id=prompt.id,
                candidate_ids=[c.id for c in candidates or []], required_labels=3)
    db.add(task)
    db.flush()
    return task


def _assignment(db: Session, task: Task, user: User) -> Assignment:
    assignment = Assignment(task_id=task.id, user_id=user.id, state=AssignmentState.submitted,
                            expires_at=utcnow() + timedelta(minutes=30))
    db.add(assignment)
    db.flush()
    return assignment


def make_ranking(db: Session, task: Task, user: User, groups: list[list[int]], *,
                 created_at: datetime | None = None, likert: int = 5) -> Ranking:
    """A submitted ranking of a rank task, with one rating per candidate as submit stores."""
    assignment = _assignment(db, task, user)
    ranking = Ranking(task_id=task.id, assignment_id=assignment.id, user_id=user.id,
                      prompt_id=task.prompt_id, groups=groups,
                      display_order=list(reversed(task.candidate_ids)), seconds_spent=42,
                      idempotency_key=f"r{next(_seq)}", created_at=created_at or utcnow())
    db.add(ranking)
    db.flush()
    for cid in task.candidate_ids:
        db.add(Rating(task_id=task.id, assignment_id=assignment.id, ranking_id=ranking.id,
                      user_id=user.id, candidate_id=cid, likert=likert,
                      flags=["hallucination"] if cid == groups[-1][0] else [], comment=""))
    db.flush()
    return ranking


def make_rating(db: Session, task: Task, user: User, candidate: Candidate, likert: int = 6,
                *, created_at: datetime | None = None) -> Rating:
    """A standalone rating of a rate task."""
    assignment = _assignment(db, task, user)
    rating = Rating(task_id=task.id, assignment_id=assignment.id, user_id=user.id,
                    candidate_id=candidate.id, likert=likert, flags=["expresses_opinion"],
                    comment="fine", idempotency_key=f"t{next(_seq)}",
                    created_at=created_at or utcnow())
    db.add(rating)
    db.flush()
    return rating


def make_demonstration(db: Session, prompt: Prompt, user: User, text: str = "The ideal answer.",
                       *, created_at: datetime | None = None) -> Demonstration:
    """A demonstration on its own demonstrate task."""
    task = make_task(db, prompt, TaskKind.demonstrate)
    assignment = _assignment(db, task, user)
    demo = Demonstration(task_id=task.id, assignment_id=assignment.id, user_id=user.id,
                         prompt_id=prompt.id, text=text, seconds_spent=30,
                         idempotency_key=f"d{next(_seq)}", created_at=created_at or utcnow())
    db.add(demo)
    db.flush()
    return demo


def ranked_task(db: Session, k: int, users_groups: list[tuple[User, list[list[int]]]], *,
                version: ModelVersion | None = None, split: str = "train",
                created_at: datetime | None = None) -> tuple[Task, list[Candidate]]:
    """A rank task of K candidates ranked by each (user, groups as candidate indices)."""
    prompt = make_prompt(db, split=split)
    cands = make_candidates(db, prompt, k, version)
    task = make_task(db, prompt, TaskKind.rank, cands)
    for user, groups in users_groups:
        make_ranking(db, task, user, [[cands[i].id for i in g] for g in groups],
                     created_at=created_at)
    return task, cands
