"""Candidate import (DESIGN.md's public contract): prompts with model outputs to rank or rate.

Each row names a prompt by id or by text (created under the import rules if new) and lists
its candidates; re-importing a row reuses what is already stored, so nothing is stored
twice. With rank tasks on, a row with 4..9 distinct candidates gets one rank task.
"""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.fields import MAX_ID, text_problem
from app.prompts import jobs as import_jobs
from app.prompts.importer import MAX_ISSUES, Importer
from app.prompts.models import Candidate, Prompt, PromptSource
from app.prompts.parsing import BadLine, read_objects, validate
from app.prompts.rules import ImportRules
from app.queue import service as queue
from app.queue.creation import MAX_RANK, MIN_RANK
from app.queue.models import Task, TaskKind

MAX_CANDIDATES = 50


@dataclass
class CandidateReport:
    rows: int = 0
    prompts_created: int = 0
    prompts_reused: int = 0
    candidates_created: int = 0
    candidates_reused: int = 0
    rank_tasks: int = 0
    rejected: int = 0
    issues: list[dict[str, Any]] = field(default_factory=list)

    def note(self, line: int, outcome: str, reason: str) -> None:
        if outcome == "rejected":
            self.rejected += 1
        if len(self.issues) < MAX_ISSUES:
            self.issues.append({"line": line, "outcome": outcome, "reason": reason})


def _has_text(item: Any) -> bool:
    """An object with a `text` that is a string of more than whitespace."""
    return isinstance(item, dict) and isinstance(item.get("text"), str) \
        and bool(item["text"].strip())


def _candidate_problem(n: int, item: Any, max_chars: int) -> str | None:
    """What is wrong with the row's n-th candidate (counting from 1), or None."""
    if not _has_text(item):
        return f"candidate {n} needs a non-empty `text`"
    if len(item["text"]) > max_chars:
        return f"candidate {n} is longer than {max_chars} characters"
    model = item.get("model")
    if model is not None and (not isinstance(model, str) or len(model) > 200):
        return f"candidate {n}: `model` must be a string of at most 200 characters"
    problem = text_problem(item["text"]) or (model and text_problem(model))
    if problem:
        return f"candidate {n}: the text {problem}"
    return None


def _check_candidates(obj: dict[str, Any], max_chars: int) -> list[tuple[str, str | None]] | str:
    """The row's distinct (text, model) candidates, or why the row is refused."""
    items = obj.get("candidates")
    if not isinstance(items, list) or not items:
        return "`candidates` must be a non-empty list"
    if len(items) > MAX_CANDIDATES:
        return f"more than {MAX_CANDIDATES} candidates"
    out: dict[str, str | None] = {}
    for i, item in enumerate(items):
        problem = _candidate_problem(i + 1, item, max_chars)
        if problem is not None:
            return problem
        out.setdefault(item["text"], item.get("model"))  # distinct texts, first occurrence wins
    return list(out.items())


class _CandidateImport:
    def __init__(self, db: Session, rules: ImportRules, report: CandidateReport) -> None:
        self.db, self.rules, self.report = db, rules, report
        self.importer = Importer(db=db, rules=rules, source=PromptSource.imported)

    def prompt_for(self, line: int, obj: dict[str, Any]) -> Prompt | str:
        if obj.get("prompt_id") is not None:
            pid = obj["prompt_id"]
            known = isinstance(pid, int) and not isinstance(pid, bool) and 1 <= pid <= MAX_ID
            prompt = self.db.get(Prompt, pid) if known else None
            return prompt if prompt is not None else f"no prompt with id {pid!r}"
        row = validate(line, {k: obj.get(k) for k in ("end_user_id", "category", "metadata")}
                       | {"text": obj.get("prompt")}, max_chars=self.rules.max_chars)
        if isinstance(row, BadLine):
            return row.reason.replace("`text`", "`prompt` (or `prompt_id`)")
        # Only exact duplicates are the same prompt: a shared prefix is a different question.
        outcome = self.importer.consider(row, prefix_rule=False)
        if outcome.prompt is not None:
            self.importer.flush()
            self.report.prompts_created += 1
            return outcome.prompt
        if outcome.kind == "merged" and outcome.duplicate_of is not None:
            self.report.prompts_reused += 1
            found = self.db.get(Prompt, outcome.duplicate_of)
            assert found is not None
            return found
        return outcome.reason

    def candidates_for(self, prompt: Prompt, items: list[tuple[str, str | None]]) -> list[int]:
        existing = {c.text: c.id for c in self.db.scalars(
            select(Candidate).where(Candidate.prompt_id == prompt.id))}
        ids = []
        for text, model in items:
            if text in existing:
                self.report.candidates_reused += 1
                ids.append(existing[text])
                continue
            cand = Candidate(prompt_id=prompt.id, text=text, model=model, sampling_params={})
            self.db.add(cand)
            self.db.flush()
            self.report.candidates_created += 1
            ids.append(cand.id)
        return ids

    def rank_task(self, line: int, prompt: Prompt, ids: list[int], overlap: int,
                  priority: int) -> None:
        if not MIN_RANK <= len(ids) <= MAX_RANK:
            self.report.note(line, "no_rank_task",
                             f"{len(ids)} distinct candidates; a rank task needs "
                             f"{MIN_RANK} to {MAX_RANK}")
            return
        same = self.db.scalars(select(Task.candidate_ids).where(
            Task.prompt_id == prompt.id, Task.kind == TaskKind.rank))
        if any(sorted(c) == sorted(ids) for c in same):
            return  # re-imported row: its rank task exists
        queue.create_rank_task(db=self.db, prompt_id=prompt.id, candidate_ids=ids,
                               overlap=overlap, priority=priority)
        self.report.rank_tasks += 1


def import_candidates(
    *, db: Session, objects: Any, rules: ImportRules | None = None, rank_tasks: bool = False,
    overlap: int = 1, priority: int = 0, progress: Any = None,
) -> CandidateReport:
    """Import candidate rows ((line, object) pairs); bad rows are reported and skipped."""
    rules = rules or ImportRules()
    report = CandidateReport()
    work = _CandidateImport(db, rules, report)
    for line, obj in objects:
        report.rows += 1
        if progress is not None:
            progress()
        if isinstance(obj, BadLine):
            report.note(line, "rejected", obj.reason)
            continue
        if not isinstance(obj, dict):
            report.note(line, "rejected", "not a JSON object")
            continue
        items = _check_candidates(obj, rules.max_chars)
        prompt = work.prompt_for(line, obj) if not isinstance(items, str) else items
        if isinstance(prompt, str) or isinstance(items, str):
            report.note(line, "rejected", prompt if isinstance(prompt, str) else str(items))
            continue
        ids = work.candidates_for(prompt, items)
        if rank_tasks:
            work.rank_task(line, prompt, ids, overlap, priority)
    return report


def import_candidates_file(*, db: Session, data: bytes, **options: Any) -> CandidateReport:
    """Import a candidates JSONL file's bytes (see import_candidates)."""
    return import_candidates(db=db, objects=read_objects(data, filename="candidates.jsonl"),
                             **options)


@import_jobs.imports("candidates")
def _import_upload(*, db: Session, data: bytes, objects: list[Any] | None,
                   config: dict[str, Any], rules: ImportRules, options: dict[str, Any],
                   progress: Any) -> dict[str, Any]:
    """An upload of candidates too large for a request, imported by the `import` job."""
    del config
    report = (import_candidates(db=db, objects=enumerate(objects, start=1), rules=rules,
                                progress=progress, **options)
              if objects is not None else
              import_candidates_file(db=db, data=data, rules=rules, progress=progress,
                                     **options))
    return dict(vars(report))
