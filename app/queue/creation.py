"""Making tasks: validated one by one for rank and rate, in one statement for bulk demonstrate."""

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, literal, literal_column, select
from sqlalchemy.orm import Session

from app.db import UTCDateTime, utcnow
from app.prompts.models import Candidate, Prompt, PromptKind, Split, UseCase
from app.queue.errors import QueueError
from app.queue.models import Task, TaskKind, TaskState

if TYPE_CHECKING:
    from app.queue.schemas import BulkCreate

MIN_RANK, MAX_RANK = 4, 9  # the paper's K
MAX_OVERLAP = 50


def _check_overlap(overlap: int) -> None:
    if not 1 <= overlap <= MAX_OVERLAP:
        raise QueueError(f"Overlap must be between 1 and {MAX_OVERLAP}, not {overlap}.")


def _gold(gold: bool, gold_answer: Any) -> None:
    if gold and gold_answer is None:
        raise QueueError("A gold task needs its known answer (gold_answer).")


def create_demonstrate_tasks_for_train_prompts(
    *, db: Session, overlap: int, priority: int = 0
) -> int:
    """A demonstrate task for every train prompt that has none; returns how many were made."""
    _check_overlap(overlap)
    has_task = select(Task.id).where(
        Task.prompt_id == Prompt.id, Task.kind == TaskKind.demonstrate
    ).exists()
    values: list[Any] = [
        literal(TaskKind.demonstrate.value), Prompt.id, literal_column("'[]'"),
        literal(overlap), literal(0), literal(0), literal(priority), literal(False),
        literal_column("'{}'"), literal(TaskState.open.value), literal(utcnow(), UTCDateTime),
    ]
    rows = select(*values).where(Prompt.split == Split.train, ~has_task)
    cols = ["kind", "prompt_id", "candidate_ids", "required_labels", "done_labels",
            "leased_labels", "priority", "gold", "params", "state", "created_at"]
    made = db.execute(insert(Task).from_select(cols, rows).returning(Task.id)).all()
    return len(made)


def create_demonstrate_tasks(
    *, db: Session, prompt_ids: list[int], overlap: int, priority: int = 0
) -> list[Task]:
    """A demonstrate task for each of these prompts (which must exist)."""
    _check_overlap(overlap)
    found = set(db.scalars(select(Prompt.id).where(Prompt.id.in_(prompt_ids))))
    missing = sorted(set(prompt_ids) - found)
    if missing:
        raise QueueError(f"No prompts with ids {missing[:20]}.", status=404)
    tasks = [Task(kind=TaskKind.demonstrate, prompt_id=pid, candidate_ids=[],
                  required_labels=overlap, priority=priority) for pid in prompt_ids]
    db.add_all(tasks)
    db.flush()
    return tasks


def create_rank_task(
    *, db: Session, prompt_id: int, candidate_ids: list[int], overlap: int, priority: int = 0,
    gold: bool = False, gold_answer: Any = None,
) -> Task:
    """A rank task over 4..9 distinct candidates of one prompt."""
    _check_overlap(overlap)
    _gold(gold, gold_answer)
    if len(set(candidate_ids)) != len(candidate_ids):
        raise QueueError("A rank task lists each candidate once.")
    if not MIN_RANK <= len(candidate_ids) <= MAX_RANK:
        raise QueueError(
            f"A rank task needs {MIN_RANK} to {MAX_RANK} candidates, not {len(candidate_ids)}."
        )
    owned = set(db.scalars(select(Candidate.id).where(
        Candidate.id.in_(candidate_ids), Candidate.prompt_id == prompt_id
    )))
    if owned != set(candidate_ids):
        stray = sorted(set(candidate_ids) - owned)
        raise QueueError(f"Candidates {stray} are not outputs for prompt {prompt_id}.")
    task = Task(kind=TaskKind.rank, prompt_id=prompt_id, candidate_ids=list(candidate_ids),
                required_labels=overlap, priority=priority, gold=gold, gold_answer=gold_answer)
    db.add(task)
    db.flush()
    return task


def create_rate_tasks(
    *, db: Session, candidate_ids: list[int], overlap: int, priority: int = 0,
    gold: bool = False, gold_answer: Any = None,
) -> list[Task]:
    """One rate task per candidate."""
    _check_overlap(overlap)
    _gold(gold, gold_answer)
    prompts = dict(db.execute(
        select(Candidate.id, Candidate.prompt_id).where(Candidate.id.in_(candidate_ids))
    ).tuples().all())
    missing = sorted(set(candidate_ids) - set(prompts))
    if missing:
        raise QueueError(f"No candidates with ids {missing[:20]}.", status=404)
    tasks = [Task(kind=TaskKind.rate, prompt_id=prompts[cid], candidate_ids=[cid],
                  required_labels=overlap, priority=priority, gold=gold,
                  gold_answer=gold_answer) for cid in dict.fromkeys(candidate_ids)]
    db.add_all(tasks)
    db.flush()
    return tasks


def create_write_prompt_tasks(
    *, db: Session, prompt_kind: PromptKind, count: int = 1, overlap: int = 1,
    priority: int = 0, use_case_ids: list[int] | None = None,
) -> list[Task]:
    """Prompt-writing tasks: `count` plain or few-shot ones, or `count` per use case."""
    _check_overlap(overlap)
    if not 1 <= count <= 10_000:
        raise QueueError(f"Count must be between 1 and 10000, not {count}.")
    params: list[dict[str, Any]] = [{"prompt_kind": prompt_kind.value}]
    if prompt_kind == PromptKind.user_based:
        query = select(UseCase.id).where(UseCase.active.is_(True))
        if use_case_ids:
            query = select(UseCase.id).where(UseCase.id.in_(use_case_ids))
        ids = list(db.scalars(query.order_by(UseCase.id)))
        if not ids or (use_case_ids and len(ids) != len(set(use_case_ids))):
            raise QueueError("User-based prompts need existing use cases; an admin adds them.")
        params = [{"prompt_kind": prompt_kind.value, "use_case_id": i} for i in ids]
    tasks = [Task(kind=TaskKind.write_prompt, prompt_id=None, candidate_ids=[],
                  required_labels=overlap, priority=priority, params=p)
             for p in params for _ in range(count)]
    db.add_all(tasks)
    db.flush()
    return tasks


def task_stats(*, db: Session) -> list[dict[str, Any]]:
    """Task counts and label progress by kind and state."""
    rows = db.execute(
        select(Task.kind, Task.state, func.count(), func.coalesce(func.sum(Task.done_labels), 0),
               func.coalesce(func.sum(Task.required_labels), 0),
               func.coalesce(func.sum(Task.leased_labels), 0))
        .group_by(Task.kind, Task.state).order_by(Task.kind, Task.state)
    ).all()
    return [{"kind": k, "state": s, "tasks": n, "done_labels": d, "required_labels": r,
             "leased_labels": live} for k, s, n, d, r, live in rows]


def create_bulk(*, db: Session, spec: "BulkCreate") -> tuple[int, list[int]]:
    """Make the tasks a bulk request describes; returns (how many, their ids when listed)."""
    if spec.kind == TaskKind.demonstrate and spec.prompt_ids is None:
        n = create_demonstrate_tasks_for_train_prompts(
            db=db, overlap=spec.overlap, priority=spec.priority)
        return n, []
    if spec.kind == TaskKind.demonstrate:
        tasks = create_demonstrate_tasks(db=db, prompt_ids=spec.prompt_ids or [],
                                         overlap=spec.overlap, priority=spec.priority)
    elif spec.kind == TaskKind.rank:
        if not spec.rank:
            raise QueueError("List the rank tasks to make in `rank`.")
        tasks = [create_rank_task(db=db, prompt_id=r.prompt_id, candidate_ids=r.candidate_ids,
                                  overlap=spec.overlap, priority=spec.priority, gold=r.gold,
                                  gold_answer=r.gold_answer) for r in spec.rank]
    elif spec.kind == TaskKind.rate:
        if not spec.candidate_ids:
            raise QueueError("List the candidates to rate in `candidate_ids`.")
        tasks = create_rate_tasks(db=db, candidate_ids=spec.candidate_ids, overlap=spec.overlap,
                                  priority=spec.priority, gold=spec.gold,
                                  gold_answer=spec.gold_answer)
    else:
        tasks = create_write_prompt_tasks(
            db=db, prompt_kind=spec.prompt_kind, count=spec.count, overlap=spec.overlap,
            priority=spec.priority, use_case_ids=spec.use_case_ids)
    return len(tasks), [t.id for t in tasks]
