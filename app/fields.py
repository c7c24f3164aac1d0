"""Validated types for what requests carry: ids, pagination, dates, text and free JSON.

Use them in schemas and route signatures instead of bare `int`, `str`, `datetime`, `Any`,
so bad input is a 422 that names the field (app/errors.py) before it reaches the database:
an id ≥ 2³¹, a negative limit, year 1 or 9999, a NUL character or a lone surrogate (which
PostgreSQL refuses), JSON nested thousands deep.

    def get_job(db: DbSession, _: Staff, job_id: Id) -> JobRead: ...
    class JobCreate(BaseModel):
        name: Text = Field(max_length=200)
        model_version_ids: list[Id]
"""

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any

import annotated_types as at
from pydantic import AfterValidator, BeforeValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

MAX_ID = 2**31 - 1  # PostgreSQL `integer`, the type of every id column
MAX_JSON_DEPTH = 32
EARLIEST = date(1970, 1, 1)
LATEST = date(2100, 1, 1)


def text_problem(value: str) -> str | None:
    """Why this text cannot be stored (a NUL or a lone surrogate), or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")  # in C: a lone surrogate cannot be encoded
        except UnicodeEncodeError:
            return "must be valid Unicode (it contains a lone surrogate)"
    return None


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why this JSON value cannot be stored (too deep, or text that cannot be), or None."""
    if depth > MAX_JSON_DEPTH:
        return f"is nested more than {MAX_JSON_DEPTH} levels deep"
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return "holds a number too large to store"
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = json_problem(item, depth + 1)
        if problem:
            return problem
    return None


def _text(value: Any) -> Any:
    # Before str's own validation, so length limits on a Text field stay str's limits.
    problem = text_problem(value) if isinstance(value, str) else None
    if problem:
        raise ValueError(problem)
    return value


def _json(value: Any) -> Any:
    problem = json_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _not_a_number(value: Any) -> Any:
    # Pydantic reads a number, or a string of one, as a Unix timestamp: `until=-3e-68` was
    # taken for 1970-01-01, where the spec (a date or date-time string) refuses it.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("must be a date (YYYY-MM-DD) or an ISO 8601 time, not a number")
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _sane_time(value: date) -> date:
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST <= day < LATEST:
        raise ValueError(f"must be between {EARLIEST} and {LATEST}")
    return value


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _email(value: str) -> str:
    if "@" not in value:
        raise ValueError("must be an email address (name@domain)")
    return value


class Published:
    """A rule a validator enforces, as the published schema states it: `pattern`.

    JSON Schema bounds no date and knows no text rule of ours, but a pattern says the same,
    so a client (or a fuzzer) reading the spec knows that year 9999, a NUL character or an
    email without '@' is refused, while the validator keeps its sentence. (A lone surrogate
    cannot be sent as UTF-8 at all.)"""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_json_schema__(self, core: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core)
        schema["pattern"] = self.pattern
        return schema


_YEARS = Published(r"^(19[7-9][0-9]|20[0-9][0-9])-")  # _sane_time's 1970 up to 2099
_NO_NUL = r"^[^\x00]*$"
STORABLE_JSON = "StorableJson"
"""The spec's component for JsonValue (app.errors.publish_errors adds it)."""


def storable_json_schema() -> dict[str, Any]:
    """json_problem's rule as the spec states it: any JSON whose text, keys included, has no
    NUL. (Its depth and its integers past 2⁶³ JSON Schema cannot tell from a float's.)"""
    ref = {"$ref": f"#/components/schemas/{STORABLE_JSON}"}
    return {"anyOf": [
        {"type": "string", "pattern": _NO_NUL}, {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": ref},
        {"type": "object", "propertyNames": {"pattern": _NO_NUL}, "additionalProperties": ref},
    ]}


class _Storable:
    def __init__(self, *, object_only: bool = False) -> None:
        self.object_only = object_only

    def __get_pydantic_json_schema__(self, core: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # (allOf: Pydantic resolves a bare $ref among its own models, and this is none.)
        ref = {"allOf": [{"$ref": f"#/components/schemas/{STORABLE_JSON}"}]}
        if self.object_only:
            return {"type": "object", "propertyNames": {"pattern": _NO_NUL},
                    "additionalProperties": ref}
        return ref


def _utc(value: datetime) -> datetime:
    # A time without a zone is read as UTC, the zone every stored timestamp is in.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Id = Annotated[int, at.Ge(1), at.Le(MAX_ID)]
"""A row id: 1 ≤ id < 2³¹."""
Int32 = Annotated[int, at.Ge(-MAX_ID - 1), at.Le(MAX_ID)]
"""Any integer an `integer` column holds: for a form field whose range a schema checks."""
Offset = Annotated[int, at.Ge(0), at.Le(MAX_ID)]
PageSize = Annotated[int, at.Ge(1), at.Le(200)]
PageNumber = Annotated[int, at.Ge(1), at.Le(1_000_000)]
Text = Annotated[str, BeforeValidator(_text), Published(_NO_NUL)]
"""Text that can be stored: no NUL characters, no lone surrogates."""
JsonValue = Annotated[Any, AfterValidator(_json), _Storable()]
"""Free JSON that can be stored: at most MAX_JSON_DEPTH deep, storable text and numbers."""
JsonObject = Annotated[dict[str, Any], AfterValidator(_json), _Storable(object_only=True)]
Day = Annotated[date, BeforeValidator(_not_a_number), AfterValidator(_sane_time), _YEARS]
"""A calendar date from 1970 up to 2100."""
Moment = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(_sane_time),
                   AfterValidator(_utc), _YEARS]
"""A time from 1970 up to 2100; without a zone it is UTC."""
Name = Annotated[str, BeforeValidator(_text), AfterValidator(_named),
                 Published(r"^[^\x00]*[^\s\x00\x1c-\x1f][^\x00]*$")]
"""Text that names something: not blank once stripped (Python's strip also takes the
separators 0x1c-0x1f, which a pattern's \\s does not)."""
Email = Annotated[str, BeforeValidator(_text), AfterValidator(_email),
                  Published(r"^[^\x00]*@[^\x00]*$")]
"""An email address as accounts take it: text with an '@' (give it a max_length)."""


def checked(form: Mapping[str, Any], key: str) -> bool:
    """Whether an HTML form's checkbox `key` was ticked (absent, empty or "false" is not)."""
    value = form.get(key)
    return value is not None and value != "" and value != "false"
