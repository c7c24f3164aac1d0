"""Making tasks from a list a researcher pastes into the Tasks page: one id per line (or
comma-separated), each line reported on its own (created, skipped, rejected) like an import."""

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.prompts.models import Candidate, Prompt
from app.queue.creation import MAX_OVERLAP, MAX_RANK, MIN_RANK
from app.queue.errors import QueueError
from app.queue.models import Task, TaskKind

MAX_LINES = 5000
KINDS = ("demonstrate", "rank", "rate")
# What each line names, per kind.
NAMES = {"demonstrate": "prompt", "rank": "prompt", "rate": "candidate"}


@dataclass
class LineReport:
    """What happened to each line: created (with the task), skipped or rejected (why)."""

    created: int = 0
    skipped: int = 0
    rejected: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)

    def note(self, line: int, given: str, outcome: str, reason: str = "",
             task_id: int | None = None) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.lines.append({"line": line, "input": given, "outcome": outcome, "reason": reason,
                           "task_id": task_id})


def _tokens(text: str) -> list[tuple[int, str]]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        for token in re.split(r"[,\s]+", line.strip()):
            if token:
                out.append((n, token))
    return out


def _is_id(token: str) -> bool:
    """A whole number small enough for the id columns (under 19 digits)."""
    return token.isdigit() and len(token) < 19


def _check_request(*, kind: str, overlap: int, tokens: list[tuple[int, str]]) -> None:
    """Refuse the whole list (before anything is made) for a bad kind, overlap or size."""
    if kind not in KINDS:
        raise QueueError(f"Choose the kind of task: {', '.join(KINDS)}.")
    if not 1 <= overlap <= MAX_OVERLAP:
        raise QueueError(f"Overlap must be between 1 and {MAX_OVERLAP}, not {overlap}.")
    if not tokens:
        raise QueueError(f"List at least one {NAMES[kind]} id, one per line.")
    if len(tokens) > MAX_LINES:
        raise QueueError(f"List at most {MAX_LINES:,} ids at a time; this list has "
                         f"{len(tokens):,}.")


@dataclass
class _Found:
    """What the database holds for the listed ids of one kind."""

    kind: str
    prompt_of: dict[int, int]  # listed id that exists -> its prompt id
    done: set[int]  # listed ids that already have a task of this kind
    candidates: dict[int, list[int]]  # prompt id -> its candidate ids (rank only)

    def refusal(self, item: int) -> tuple[str, str] | None:
        """Why this id makes no task (outcome and reason), or None when it makes one."""
        name = NAMES[self.kind]
        if item not in self.prompt_of:
            return "rejected", f"there is no {name} {item}"
        if item in self.done:
            return "skipped", f"this {name} already has a {self.kind} task"
        n = len(self.candidates.get(item, []))
        if self.kind == "rank" and not MIN_RANK <= n <= MAX_RANK:
            return "rejected", (f"prompt {item} has {n} candidates; a rank task needs "
                                f"{MIN_RANK} to {MAX_RANK}")
        return None

    def task(self, item: int) -> Task:
        """The new task for an id that passed `refusal`."""
        kind = TaskKind(self.kind)
        if self.kind == "rank":
            return Task(kind=kind, prompt_id=item, candidate_ids=self.candidates.get(item, []))
        if self.kind == "rate":
            return Task(kind=kind, prompt_id=self.prompt_of[item], candidate_ids=[item])
        return Task(kind=kind, prompt_id=item, candidate_ids=[])


def _find(*, db: Session, kind: str, ids: set[int]) -> _Found:
    """Look up the listed ids, what already has a task, and (rank) each prompt's outputs."""
    if kind == "rate":
        prompt_of = dict(db.execute(select(Candidate.id, Candidate.prompt_id)
                                    .where(Candidate.id.in_(ids))).all())
    else:
        prompt_of = {pid: pid for pid in db.scalars(select(Prompt.id).where(Prompt.id.in_(ids)))}
    # What already has a task of this kind: its prompt (demonstrate, rank) or output (rate).
    existing = db.execute(select(Task.prompt_id, Task.candidate_ids).where(
        Task.kind == TaskKind(kind), Task.prompt_id.in_(set(prompt_of.values())))).all()
    if kind == "rate":
        done = {ids_[0] for _, ids_ in existing if ids_}
    else:
        done = {pid for pid, _ in existing if pid is not None}
    candidates: dict[int, list[int]] = {}
    if kind == "rank":
        for cid, pid in db.execute(select(Candidate.id, Candidate.prompt_id)
                                   .where(Candidate.prompt_id.in_(prompt_of))
                                   .order_by(Candidate.id)):
            candidates.setdefault(pid, []).append(cid)
    return _Found(kind=kind, prompt_of=prompt_of, done=done, candidates=candidates)


def create_from_lines(*, db: Session, kind: str, text: str, overlap: int = 1,
                      priority: int = 0) -> LineReport:
    """Tasks of this kind for each id listed: demonstrate and rank take prompt ids (a rank
    task over all of the prompt's 4-9 candidates), rate takes candidate ids."""
    tokens = _tokens(text)
    _check_request(kind=kind, overlap=overlap, tokens=tokens)
    found = _find(db=db, kind=kind, ids={int(t) for _, t in tokens if _is_id(t)})
    report = LineReport()
    seen: set[int] = set()
    for line, token in tokens:
        if not _is_id(token):
            report.note(line, token, "rejected", f"{token!r} is not a {NAMES[kind]} id (a "
                        "whole number)")
            continue
        item = int(token)
        if item in seen:
            report.note(line, token, "skipped", "listed twice")
            continue
        seen.add(item)
        refusal = found.refusal(item)
        if refusal is not None:
            report.note(line, token, *refusal)
            continue
        task = found.task(item)
        task.required_labels, task.priority = overlap, priority
        db.add(task)
        db.flush()
        report.note(line, token, "created", task_id=task.id)
    return report
