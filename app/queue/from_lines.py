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


def create_from_lines(*, db: Session, kind: str, text: str, overlap: int = 1,
                      priority: int = 0) -> LineReport:
    """Tasks of this kind for each id listed: demonstrate and rank take prompt ids (a rank
    task over all of the prompt's 4-9 candidates), rate takes candidate ids."""
    if kind not in KINDS:
        raise QueueError(f"Choose the kind of task: {', '.join(KINDS)}.")
    if not 1 <= overlap <= MAX_OVERLAP:
        raise QueueError(f"Overlap must be between 1 and {MAX_OVERLAP}, not {overlap}.")
    tokens = _tokens(text)
    if not tokens:
        raise QueueError(f"List at least one {NAMES[kind]} id, one per line.")
    if len(tokens) > MAX_LINES:
        raise QueueError(f"List at most {MAX_LINES:,} ids at a time; this list has "
                         f"{len(tokens):,}.")
    report = LineReport()
    ids = {int(t) for _, t in tokens if t.isdigit() and len(t) < 19}
    task_kind = TaskKind(kind)
    if kind == "rate":
        known = dict(db.execute(select(Candidate.id, Candidate.prompt_id)
                                .where(Candidate.id.in_(ids))).all())
    else:
        known = {pid: pid for pid in db.scalars(select(Prompt.id).where(Prompt.id.in_(ids)))}
    # What already has a task of this kind: its prompt (demonstrate, rank) or output (rate).
    existing = db.execute(select(Task.prompt_id, Task.candidate_ids).where(
        Task.kind == task_kind, Task.prompt_id.in_(set(known.values())))).all()
    done = {ids_[0] for _, ids_ in existing if ids_} if kind == "rate" else \
        {pid for pid, _ in existing}
    cands: dict[int, list[int]] = {}
    if kind == "rank":
        for cid, pid in db.execute(select(Candidate.id, Candidate.prompt_id)
                                   .where(Candidate.prompt_id.in_(known)).order_by(Candidate.id)):
            cands.setdefault(pid, []).append(cid)
    seen: set[int] = set()
    for line, token in tokens:
        if not token.isdigit() or len(token) >= 19:
            report.note(line, token, "rejected", f"{token!r} is not a {NAMES[kind]} id (a "
                        "whole number)")
            continue
        item = int(token)
        if item in seen:
            report.note(line, token, "skipped", "listed twice")
            continue
        seen.add(item)
        if item not in known:
            report.note(line, token, "rejected", f"there is no {NAMES[kind]} {item}")
            continue
        if item in done:
            report.note(line, token, "skipped", f"this {NAMES[kind]} already has a {kind} task")
            continue
        if kind == "rank":
            ids_of = cands.get(item, [])
            if not MIN_RANK <= len(ids_of) <= MAX_RANK:
                report.note(line, token, "rejected", f"prompt {item} has {len(ids_of)} "
                            f"candidates; a rank task needs {MIN_RANK} to {MAX_RANK}")
                continue
            task = Task(kind=task_kind, prompt_id=item, candidate_ids=ids_of)
        elif kind == "rate":
            task = Task(kind=task_kind, prompt_id=known[item], candidate_ids=[item])
        else:
            task = Task(kind=task_kind, prompt_id=item, candidate_ids=[])
        task.required_labels, task.priority = overlap, priority
        db.add(task)
        db.flush()
        report.note(line, token, "created", task_id=task.id)
    return report
