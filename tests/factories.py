"""The test data factories (one set for every area) and a login helper for the HTTP client.

Rows are created directly, flushed, never committed: the submit and queue paths that
create them in the product are tested on their own. Every text and hash is unique.
"""

import hashlib
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.auth import service as auth
from app.auth.models import Role, User
from app.db import utcnow
from app.labeling.models import Demonstration, Ranking, Rating
from app.prompts.models import Candidate, Prompt, PromptSource, Split
from app.queue.models import Assignment, AssignmentState, Task, TaskKind
from app.registry.models import ModelVersion

PASSWORD = "correct horse battery"
T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday
_seq = itertools.count(1)


# --- users ------------------------------------------------------------------------------


def make_user(db: Session, role: Role | str = Role.labeler, *, held_out: bool = False,
              email: str | None = None, password: str = PASSWORD) -> User:
    """A user with a unique email and the shared test password."""
    email = email or f"{Role(role).value}{next(_seq)}@example.com"
    return auth.create_user(db=db, email=email, password=password, role=Role(role),
                            held_out=held_out)


def csrf_from(html: str) -> str:
    """The CSRF token a page carries in its <meta name="csrf-token">."""
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client, user: User, password: str = PASSWORD) -> str:  # type: ignore[no-untyped-def]
    """Log the client in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    token = csrf_from(page.text)
    resp = client.post("/login", data={"email": user.email, "password": password,
                                       "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    return csrf_from(client.get("/account").text)


# --- prompts, outputs, model versions --------------------------------------------------


def make_prompt(db: Session, text: str | None = None, *, split: Split | str = Split.train,
                category: str | None = None, end_user_id: str | None = None,
                created_at: datetime | None = None) -> Prompt:
    """A prompt with a unique text."""
    text = text or f"Prompt number {next(_seq)}: write something."
    prompt = Prompt(text=text, text_hash=hashlib.sha256(text.encode()).hexdigest(),
                    source=PromptSource.imported, end_user_id=end_user_id, split=Split(split),
                    category=category, meta={}, pii_counts={},
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


def make_candidates(db: Session, prompt: Prompt, n: int = 4, *,
                    version: ModelVersion | None = None,
                    texts: list[str] | None = None) -> list[Candidate]:
    """n distinct model outputs for a prompt (these texts, when given)."""
    texts = texts or [f"Output {i} of prompt {prompt.id}." for i in range(n)]
    cands = [Candidate(prompt_id=prompt.id, text=t, model=version.name if version else "m",
                       model_version_id=version.id if version else None) for t in texts]
    db.add_all(cands)
    db.flush()
    return cands


# --- tasks and leases --------------------------------------------------------------------


def make_task(db: Session, kind: TaskKind | str = TaskKind.demonstrate, *,
              prompt: Prompt | None = None, candidates: list[Candidate] | None = None,
              k: int | None = None, overlap: int = 1, priority: int = 0, gold: bool = False,
              gold_answer: Any = None, params: dict[str, Any] | None = None,
              texts: list[str] | None = None, category: str | None = None) -> Task:
    """An open task of this kind on `prompt` (a fresh one unless given; none for
    write_prompt), with `candidates` or, for rank, k (4) fresh outputs and for rate k (1)."""
    kind = TaskKind(kind)
    if kind != TaskKind.write_prompt:
        prompt = prompt or make_prompt(db, category=category)
    if candidates is None and kind in (TaskKind.rank, TaskKind.rate):
        assert prompt is not None
        n = len(texts) if texts else k or (4 if kind == TaskKind.rank else 1)
        candidates = make_candidates(db, prompt, n, texts=texts)
    task = Task(kind=kind, prompt_id=prompt.id if prompt else None,
                candidate_ids=[c.id for c in candidates or []], required_labels=overlap,
                priority=priority, gold=gold or gold_answer is not None,
                gold_answer=gold_answer, params=params or {})
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


def finished(db: Session, task: Task, user: User, *, at: datetime | None = None,
             state: AssignmentState = AssignmentState.submitted) -> Assignment:
    """A finished (submitted, skipped ...) assignment; the task's counters are left as
    they are."""
    at = at or utcnow()
    assignment = Assignment(task_id=task.id, user_id=user.id, state=state, leased_at=at,
                            expires_at=at + timedelta(minutes=30), finished_at=at,
                            display_order=list(task.candidate_ids))
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


# --- submissions, stored directly --------------------------------------------------------


def make_ranking(db: Session, task: Task, user: User, groups: list[list[int]], *,
                 at: datetime | None = None, seconds: int = 60, shown: list[int] | None = None,
                 likert: int | dict[int, int] = 4,
                 flags: dict[int, list[str]] | None = None) -> Ranking:
    """A submitted ranking (groups of candidate ids, best first) with one rating per
    output, as the submit stores them."""
    a = finished(db, task, user, at=at)
    ranking = Ranking(task_id=task.id, assignment_id=a.id, user_id=user.id,
                      prompt_id=task.prompt_id, groups=groups,
                      display_order=shown or list(task.candidate_ids), seconds_spent=seconds,
                      idempotency_key=f"k{next(_seq)}", created_at=a.finished_at)
    db.add(ranking)
    db.flush()
    for cid in task.candidate_ids:
        score = likert.get(cid, 4) if isinstance(likert, dict) else likert
        db.add(Rating(task_id=task.id, assignment_id=a.id, ranking_id=ranking.id,
                      user_id=user.id, candidate_id=cid, likert=score,
                      flags=(flags or {}).get(cid, []), comment="", created_at=a.finished_at))
    db.flush()
    return ranking


def make_rating(db: Session, task: Task, user: User, likert: int = 6, *,
                candidate: Candidate | None = None, at: datetime | None = None,
                seconds: int = 30, flags: list[str] | None = None, comment: str = "") -> Rating:
    """A rate task's rating (of its first output unless given)."""
    a = finished(db, task, user, at=at)
    rating = Rating(task_id=task.id, assignment_id=a.id, user_id=user.id,
                    candidate_id=candidate.id if candidate else task.candidate_ids[0],
                    likert=likert, flags=flags or [], comment=comment, seconds_spent=seconds,
                    idempotency_key=f"k{next(_seq)}", created_at=a.finished_at)
    db.add(rating)
    db.flush()
    return rating


def make_demonstration(db: Session, prompt: Prompt, user: User, text: str = "The ideal answer.",
                       *, created_at: datetime | None = None) -> Demonstration:
    """A demonstration on its own demonstrate task."""
    task = make_task(db, TaskKind.demonstrate, prompt=prompt)
    a = finished(db, task, user, at=created_at)
    demo = Demonstration(task_id=task.id, assignment_id=a.id, user_id=user.id,
                         prompt_id=prompt.id, text=text, seconds_spent=30,
                         idempotency_key=f"d{next(_seq)}", created_at=a.finished_at)
    db.add(demo)
    db.flush()
    return demo


def ranked_task(db: Session, k: int, users_groups: list[tuple[User, list[list[int]]]], *,
                version: ModelVersion | None = None, split: str = "train",
                created_at: datetime | None = None) -> tuple[Task, list[Candidate]]:
    """A rank task of K outputs ranked by each (user, groups as output indices), shown in
    reverse order; each ranking rates every output 5 and flags its worst a hallucination."""
    prompt = make_prompt(db, split=split, category="generation", end_user_id="u1")
    cands = make_candidates(db, prompt, k, version=version)
    task = make_task(db, TaskKind.rank, prompt=prompt, candidates=cands,
                     overlap=max(1, len(users_groups)))
    for user, groups in users_groups:
        ids = [[cands[i].id for i in g] for g in groups]
        make_ranking(db, task, user, ids, at=created_at, seconds=42, likert=5,
                     shown=list(reversed(task.candidate_ids)),
                     flags={ids[-1][0]: ["hallucination"]})
    return task, cands
