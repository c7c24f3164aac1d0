"""Reading import files (JSONL or CSV) into rows, each bad line with its number and reason."""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.errors import DomainError
from app.fields import json_problem, text_problem
from app.prompts.models import CATEGORIES

MAX_META_CHARS = 10_000
csv.field_size_limit(10_000_000)


class ParseError(DomainError, ValueError):
    """The file as a whole cannot be read (not one bad line: those are reported per line)."""


@dataclass
class Row:
    """One prompt to import, from line `line` of the file."""

    line: int
    text: str
    end_user_id: str | None = None
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class BadLine:
    line: int
    reason: str


def _optional_str(value: Any, name: str, limit: int) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"`{name}` must be a string")
    value = str(value).strip()
    problem = text_problem(value)
    if problem:
        raise ValueError(f"`{name}` {problem}")
    if len(value) > limit:
        raise ValueError(f"`{name}` is longer than {limit} characters")
    return value or None


def _text_problem(text: str, key: str, max_chars: int) -> str | None:
    """Why the row's (non-empty) text cannot be a prompt, or None."""
    if len(text) > max_chars:
        return f"`{key}` is longer than {max_chars} characters"
    problem = text_problem(text)
    return f"`{key}` {problem}" if problem else None


def _category(value: Any) -> str | None:
    """The row's category, if given; ValueError unless it is one of CATEGORIES."""
    category = _optional_str(value, "category", 40)
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}")
    return category


def _metadata(value: Any) -> dict[str, Any]:
    """The row's metadata ({} if none), given as an object or as JSON text; ValueError with
    why it cannot be stored."""
    meta = value or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except (json.JSONDecodeError, RecursionError):
            raise ValueError("`metadata` is not valid JSON") from None
    if not isinstance(meta, dict):
        raise ValueError("`metadata` must be a JSON object")
    problem = json_problem(meta)
    if problem:
        raise ValueError(f"`metadata` {problem}")
    if len(json.dumps(meta)) > MAX_META_CHARS:
        raise ValueError(f"`metadata` is larger than {MAX_META_CHARS} characters")
    return meta


def validate(line: int, obj: Any, *, max_chars: int, text_key: str = "text") -> Row | BadLine:
    """A checked row, or the reason this line cannot be imported."""
    if not isinstance(obj, dict):
        return BadLine(line, "not a JSON object")
    text = obj.get(text_key)
    if not isinstance(text, str) or not text.strip():
        return BadLine(line, f"`{text_key}` is missing or empty")
    problem = _text_problem(text, text_key, max_chars)
    if problem:
        return BadLine(line, problem)
    try:
        end_user = _optional_str(obj.get("end_user_id"), "end_user_id", 200)
        category = _category(obj.get("category"))
        meta = _metadata(obj.get("metadata"))
    except ValueError as exc:
        return BadLine(line, str(exc))
    return Row(line, text, end_user, category, meta, obj)


def _jsonl(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, BadLine(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
        except RecursionError:
            yield number, BadLine(number, "invalid JSON: nested too deeply")


def _csv(stream: io.TextIOBase) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(stream)
    if not reader.fieldnames or "text" not in reader.fieldnames:
        raise ParseError("The CSV file needs a header row with a `text` column.")
    for record in reader:
        if None in record:
            yield reader.line_num, BadLine(reader.line_num, "more fields than the header")
            continue
        yield reader.line_num, record


def read_objects(data: bytes, *, filename: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or BadLine) for a JSONL or CSV file."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"The file is not UTF-8 (byte {exc.start}).") from exc
    name = filename.lower()
    first = content.lstrip()[:1]
    if name.endswith(".csv") or (not name.endswith((".jsonl", ".json", ".ndjson"))
                                 and first not in ("{", "")):
        return _csv(io.StringIO(content, newline=""))
    return _jsonl(content.splitlines())


def parse_rows(objects: Iterable[tuple[int, Any]], *, max_chars: int) -> Iterator[Row | BadLine]:
    """Validate each parsed object into a Row or a BadLine."""
    for number, obj in objects:
        yield obj if isinstance(obj, BadLine) else validate(number, obj, max_chars=max_chars)
