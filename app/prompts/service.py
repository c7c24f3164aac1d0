"""Prompts: import under the paper's rules, labeler-written prompts, listing, use cases."""

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.errors import DomainError
from app.prompts.importer import Importer, ImportReport
from app.prompts.models import Prompt, PromptKind, PromptSource, Split, UseCase
from app.prompts.parsing import BadLine, ParseError, Row, parse_rows, read_objects, validate
from app.prompts.rules import ImportRules

__all__ = [
    "ImportFailed", "ImportReport", "ImportRules", "ParseError", "PromptError",
    "create_labeler_prompt", "create_use_case", "import_file", "import_prompts",
    "list_prompts", "list_use_cases", "prompt_counts", "update_use_case",
]
PAGE_SIZE = 50  # prompts a page lists (the /prompts page, the API's default limit)
PAGE_MAX = 200


class PromptError(DomainError, ValueError):
    """A prompt operation refused, with the HTTP status it maps to."""


class ImportFailed(PromptError):
    """A strict import met a bad line: nothing was written; the report says why."""

    def __init__(self, report: ImportReport) -> None:
        bad = [i for i in report.issues if i["outcome"] == "rejected"]
        first = bad[0] if bad else {"line": "?", "reason": "?"}
        super().__init__(f"{report.rejected} bad lines (first: line {first['line']}: "
                         f"{first['reason']}); nothing was imported.", 400,
                         report=report.summary())
        self.report = report


def import_prompts(
    *, db: Session, rows: Iterable[Row | BadLine], rules: ImportRules | None = None,
    source: PromptSource = PromptSource.imported, user: User | None = None,
    strict: bool = False, progress: Callable[[], Any] | None = None,
) -> ImportReport:
    """Import rows under the rules; with `strict`, any bad line aborts the whole import."""
    importer = Importer(db=db, rules=rules or ImportRules(), source=source,
                        created_by_id=user.id if user else None)
    # A savepoint, so a refused import leaves nothing behind even if the caller goes on.
    with db.begin_nested():
        report = importer.run(rows, ImportReport(), progress)
        if strict and report.rejected:
            raise ImportFailed(report)
    return report


def import_file(
    *, db: Session, data: bytes, filename: str = "", rules: ImportRules | None = None,
    user: User | None = None, strict: bool = False,
    progress: Callable[[], Any] | None = None,
) -> ImportReport:
    """Import a JSONL or CSV file's bytes (see import_prompts)."""
    rules = rules or ImportRules()
    try:
        rows = parse_rows(read_objects(data, filename=filename), max_chars=rules.max_chars)
        return import_prompts(db=db, rows=rows, rules=rules, user=user, strict=strict,
                              progress=progress)
    except ParseError as exc:
        raise PromptError(str(exc)) from exc


def import_objects(
    *, db: Session, objects: list[Any], rules: ImportRules | None = None,
    user: User | None = None, strict: bool = False, source: PromptSource = PromptSource.api,
    progress: Callable[[], Any] | None = None,
) -> ImportReport:
    """Import a JSON list of prompt objects; "lines" are 1-based list positions."""
    rules = rules or ImportRules()
    rows = parse_rows(enumerate(objects, start=1), max_chars=rules.max_chars)
    return import_prompts(db=db, rows=rows, rules=rules, user=user, strict=strict, source=source,
                          progress=progress)


def create_labeler_prompt(
    *, db: Session, user: User, text: str, prompt_kind: PromptKind | str,
    use_case_id: int | None = None, rules: ImportRules | None = None,
) -> Prompt:
    """A prompt a labeler wrote, under the same rules as imports (no per-user cap)."""
    kind = PromptKind(prompt_kind)
    if kind == PromptKind.user_based:
        use_case = db.get(UseCase, use_case_id) if use_case_id is not None else None
        if use_case is None:
            raise PromptError("A user-based prompt needs an existing use case.", 400)
    rules = (rules or ImportRules()).model_copy(update={"max_per_end_user": None})
    meta: dict[str, Any] = {"prompt_kind": kind.value}
    if use_case_id is not None:
        meta["use_case_id"] = use_case_id
    # The labeler stands in for the end user, so one labeler's prompts share a split.
    row = validate(0, {"text": text, "end_user_id": f"labeler-{user.id}", "metadata": meta},
                   max_chars=rules.max_chars)
    if isinstance(row, BadLine):
        raise PromptError(row.reason.replace("`text`", "The prompt"), 400)
    importer = Importer(db=db, rules=rules, source=PromptSource.labeler, created_by_id=user.id)
    outcome = importer.consider(row)
    if outcome.prompt is None:
        raise PromptError(f"This prompt was not added: {outcome.reason}.", 409)
    importer.flush()
    return outcome.prompt


def list_prompts(
    *, db: Session, split: Split | None = None, category: str | None = None,
    source: PromptSource | None = None, end_user_id: str | None = None, q: str | None = None,
    limit: int = PAGE_SIZE, offset: int = 0,
) -> tuple[list[Prompt], int]:
    """A page of prompts matching the filters (newest first) and how many match in all."""
    query = select(Prompt)
    if split is not None:
        query = query.where(Prompt.split == split)
    if category:
        query = query.where(Prompt.category == category)
    if source is not None:
        query = query.where(Prompt.source == source)
    if end_user_id:
        query = query.where(Prompt.end_user_id == end_user_id)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Prompt.text.ilike(f"%{escaped}%", escape="\\"))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = db.scalars(query.order_by(Prompt.id.desc()).limit(min(limit, PAGE_MAX))
                      .offset(max(offset, 0))).all()
    return list(page), total


def prompt_counts(*, db: Session) -> dict[str, dict[str, int]]:
    """Prompt counts per split, per category and per source."""
    out: dict[str, dict[str, int]] = {}
    for name, column in (("split", Prompt.split), ("category", Prompt.category),
                         ("source", Prompt.source)):
        rows = db.execute(select(column, func.count()).group_by(column).order_by(column)).all()
        out[name] = {str(getattr(k, "value", k) or "none"): n for k, n in rows}
    return out


def list_use_cases(*, db: Session, active_only: bool = False) -> list[UseCase]:
    """The use cases labelers write user-based prompts for."""
    query = select(UseCase).order_by(UseCase.name)
    if active_only:
        query = query.where(UseCase.active.is_(True))
    return list(db.scalars(query))


def create_use_case(*, db: Session, name: str, description: str = "") -> UseCase:
    """Add a use case; names are unique."""
    name = name.strip()
    if not name:
        raise PromptError("A use case needs a name.")
    if db.scalar(select(UseCase.id).where(UseCase.name == name)) is not None:
        raise PromptError(f"There is already a use case named {name!r}.", 409)
    use_case = UseCase(name=name, description=description.strip(), active=True)
    db.add(use_case)
    db.flush()
    return use_case


def update_use_case(
    *, db: Session, use_case_id: int, name: str | None = None, description: str | None = None,
    active: bool | None = None,
) -> UseCase:
    """Rename, redescribe, retire or restore a use case."""
    use_case = db.get(UseCase, use_case_id)
    if use_case is None:
        raise PromptError(f"No use case {use_case_id}.", 404)
    if name is not None and name.strip() != use_case.name:
        clash = db.scalar(select(UseCase.id).where(UseCase.name == name.strip()))
        if clash is not None or not name.strip():
            raise PromptError(f"Cannot rename to {name!r}: empty or taken.", 409)
        use_case.name = name.strip()
    if description is not None:
        use_case.description = description.strip()
    if active is not None:
        use_case.active = active
    db.flush()
    return use_case

