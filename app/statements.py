"""Hand-written statements of the hot paths (lease, submit, token lookup), run at the
driver level.

On PostgreSQL a `Sql` runs on the session's psycopg connection, inside the session's
transaction, past SQLAlchemy's execution layer: a statement then costs about half the CPU
of a Core statement and a fifth of an ORM one, which on the lease and submit paths was
most of the server's time (docs/queue.md). Elsewhere (SQLite) it runs as `text()` with
typed result columns. Either way a row is the statement's NamedTuple (so a type checker
knows its columns) holding the same Python values: JSON decoded, timestamps
timezone-aware, enums as their string values.

What keeps these statements safe to change:

- Each names its row type; the first execution checks that the columns it returns are
  that type's fields, in order, and fails loudly otherwise.
- A write declares the rows it changes (`changes={"task_id": Task}`): it bypasses the
  session's identity map, so after running it expires the session's object of that row,
  if loaded, and the next read reloads it.
- Every execution is logged at DEBUG on the `app.statements` logger (statement,
  parameters, milliseconds), as SQLAlchemy logs its own on `sqlalchemy.engine`.
"""

import datetime as dt
import logging
import re
import time
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar, overload

import psycopg
from sqlalchemy import JSON, Boolean, bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.db import UTCDateTime

log = logging.getLogger("app.statements")

R = TypeVar("R", bound=tuple[Any, ...])


class Nothing(NamedTuple):
    """The row type of a write that returns no rows."""


def forget(db: Session, model: Any, row_id: int) -> None:
    """Expire the session's object of this row, if it has one, so it reloads when read:
    for rows changed behind the identity map's back."""
    loaded = db.identity_map.get(identity_key(model, row_id))
    if loaded is not None:
        db.expire(loaded)


def _sqlite_type(hint: Any) -> Any:
    """The SQLAlchemy type that gives a column this Python type on SQLite, or None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return _sqlite_type(args[0]) if len(args) == 1 else None
    base = typing.get_origin(hint) or hint
    if base is dt.datetime:
        return UTCDateTime()
    if base in (list, dict):
        return JSON()
    if base is bool:
        return Boolean()
    return None


class Sql(Generic[R]):
    """One hand-written statement of a hot path, with `:name` parameters; rows are `R`."""

    @overload
    def __init__(self: "Sql[Nothing]", statement: str, *, lock: bool = ...,
                 stamps: tuple[str, ...] = ..., changes: Mapping[str, Any] = ...) -> None: ...

    @overload
    def __init__(self, statement: str, row: type[R], *, lock: bool = ...,
                 stamps: tuple[str, ...] = ..., changes: Mapping[str, Any] = ...) -> None: ...

    def __init__(self, statement: str, row: Any = Nothing, *, lock: bool = False,
                 stamps: tuple[str, ...] = (), changes: Mapping[str, Any] = {}) -> None:
        """`row`: the NamedTuple of a result row (its fields are the result's columns, in
        order; their annotations give SQLite the types to convert to); `lock`: a SELECT
        that locks its rows (FOR UPDATE; SQLite has no row locks, its writers are
        serialised); `stamps`: the parameters that are timestamps (SQLite stores them as
        text in SQLAlchemy's format); `changes`: {parameter: model} of the rows a write
        changes, which the session then forgets."""
        self.row: type[R] = row
        self.statement = statement.rstrip() + " FOR UPDATE" if lock else statement
        self.pyformat = re.sub(r"(?<!:):(\w+)", r"%(\1)s", self.statement.replace("%", "%%"))
        self.changes = tuple(changes.items())
        self._make = row._make
        self._checked = False
        self._logged = " ".join(self.statement.split())
        binds = [bindparam(p, type_=UTCDateTime()) for p in stamps]
        typed = {name: t for name, hint in typing.get_type_hints(row).items()
                 if (t := _sqlite_type(hint)) is not None}
        clauses = [text(sql).bindparams(*binds) for sql in (self.statement, statement)]
        self.text, self.portable = (c.columns(**typed) if typed else c for c in clauses)

    def _check(self, columns: Sequence[str]) -> None:
        fields = self.row._fields  # type: ignore[attr-defined]
        if tuple(columns) != fields:
            raise TypeError(f"{self.row.__name__} has fields {fields} but the statement "
                            f"returns {tuple(columns)}: {self._logged}")
        self._checked = True

    def _maker(self, cursor: Any) -> Any:
        """psycopg's row factory: the row type's constructor, once the columns are checked."""
        if not self._checked and cursor.description is not None:
            self._check([d.name for d in cursor.description])
        return self._make

    def _run(self, db: Session, params: Mapping[str, Any]) -> Any:
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        conn = db.connection()
        if conn.dialect.driver == "psycopg":
            raw = conn.connection.driver_connection
            assert raw is not None  # a checked-out connection
            try:
                cursor = raw.cursor(row_factory=self._maker).execute(self.pyformat, params)
            except psycopg.Error as exc:
                # The exception SQLAlchemy would raise (IntegrityError, OperationalError, …),
                # so callers catch one family of errors whichever way a statement ran. A
                # connection the error broke leaves the pool, as SQLAlchemy's own path does.
                lost = bool(raw.closed or raw.broken)
                if lost:
                    conn.invalidate(exc)
                raise DBAPIError.instance(self.pyformat, params, exc, psycopg.Error,
                                          connection_invalidated=lost) from exc
        else:
            result = conn.execute(
                self.text if conn.dialect.name == "postgresql" else self.portable, params)
            if result.returns_rows and not self._checked:
                self._check(list(result.keys()))
            cursor = _Rows(result, self._make)
        for name, model in self.changes:
            forget(db, model, params[name])
        if debug:
            log.debug("%s %r (%.2f ms)", self._logged, dict(params),
                      1000 * (time.perf_counter() - started))
        return cursor

    def all(self, db: Session, params: Mapping[str, Any]) -> list[R]:
        """Every row."""
        return list(self._run(db, params).fetchall())

    def first(self, db: Session, params: Mapping[str, Any]) -> R | None:
        """The first row, or None."""
        row: R | None = self._run(db, params).fetchone()
        return row

    def one(self, db: Session, params: Mapping[str, Any]) -> R:
        """The one row (an INSERT … RETURNING)."""
        row: R | None = self._run(db, params).fetchone()
        if row is None:
            raise LookupError("the statement returned no row")
        return row

    def rowcount(self, db: Session, params: Mapping[str, Any]) -> int:
        """Run a write; how many rows it changed."""
        return int(self._run(db, params).rowcount)


class _Rows:
    """A SQLAlchemy result whose rows come out as the statement's row type."""

    __slots__ = ("_make", "_result")

    def __init__(self, result: Any, make: Any) -> None:
        self._result, self._make = result, make

    @property
    def rowcount(self) -> int:
        return int(self._result.rowcount)

    def fetchone(self) -> Any:
        row = self._result.fetchone()
        return None if row is None else self._make(row)

    def fetchall(self) -> list[Any]:
        return [self._make(row) for row in self._result.fetchall()]
