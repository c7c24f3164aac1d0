"""Rows the agreement figures read, created directly (not through the submit path)."""

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.auth.models import User
from app.labeling.models import Ranking, Rating
from app.prompts.models import Candidate, Prompt, PromptSource, Split
from app.queue.models import Assignment, AssignmentState, Task, TaskKind

_seq = itertools.count(1)
T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday


def make_rank_task(db: Session, k: int = 4, *, gold_answer: list | None = None,
                   category: str | None = None, kind: TaskKind = TaskKind.rank) -> Task:
    """A rank (or rate) task on a fresh prompt with k candidates."""
    n = next(_seq)
    prompt = Prompt(text=f"prompt {n}", text_hash=f"agreement-{n}", source=PromptSource.imported,
                    split=Split.train, category=category)
    db.add(prompt)
    db.flush()
    cands = [Candidate(prompt_id=prompt.id, text=f"output {i}") for i in range(k)]
    db.add_all(cands)
    db.flush()
    task = Task(kind=kind, prompt_id=prompt.id, candidate_ids=[c.id for c in cands],
                required_labels=3, gold=gold_answer is not None, gold_answer=gold_answer)
    db.add(task)
    db.flush()
    return task


def _assignment(db: Session, task: Task, user: User, at: datetime,
                state: AssignmentState = AssignmentState.submitted) -> Assignment:
    a = Assignment(task_id=task.id, user_id=user.id, state=state, leased_at=at,
                   expires_at=at + timedelta(minutes=30), finished_at=at,
                   display_order=list(task.candidate_ids))
    db.add(a)
    db.flush()
    return a


def make_ranking(db: Session, task: Task, user: User, groups: list[list[int]], *,
                 at: datetime = T0, seconds: int = 60, shown: list[int] | None = None,
                 likert: dict[int, int] | None = None,
                 flags: dict[int, list[str]] | None = None) -> Ranking:
    """A submitted ranking (groups of candidate ids, best first) with one rating each."""
    a = _assignment(db, task, user, at)
    r = Ranking(task_id=task.id, assignment_id=a.id, user_id=user.id, prompt_id=task.prompt_id,
                groups=groups, display_order=shown or list(task.candidate_ids),
                seconds_spent=seconds, idempotency_key=f"k{next(_seq)}", created_at=at)
    db.add(r)
    db.flush()
    for cid in task.candidate_ids:
        db.add(Rating(task_id=task.id, assignment_id=a.id, ranking_id=r.id, user_id=user.id,
                      candidate_id=cid, likert=(likert or {}).get(cid, 4),
                      flags=(flags or {}).get(cid, []), created_at=at))
    db.flush()
    return r


def make_rating(db: Session, task: Task, user: User, likert: int, *, at: datetime = T0,
                seconds: int = 30, flags: list[str] | None = None) -> Rating:
    """A rate-task rating of the task's first candidate."""
    a = _assignment(db, task, user, at)
    r = Rating(task_id=task.id, assignment_id=a.id, user_id=user.id,
               candidate_id=task.candidate_ids[0], likert=likert, flags=flags or [],
               seconds_spent=seconds, idempotency_key=f"k{next(_seq)}", created_at=at)
    db.add(r)
    db.flush()
    return r


def make_skip(db: Session, task: Task, user: User, at: datetime = T0) -> Assignment:
    """A skipped assignment."""
    return _assignment(db, task, user, at, AssignmentState.skipped)
