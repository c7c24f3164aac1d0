"""Engine, session factory, declarative Base and the request session dependency."""

import re
import select
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import psycopg
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar
from fastapi import Depends
from psycopg.rows import namedtuple_row
from sqlalchemy import DateTime, Engine, MetaData, bindparam, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.orm.util import identity_key
from sqlalchemy.types import TypeDecorator

from app.config import get_settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on PostgreSQL and SQLite alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Now, timezone-aware."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def make_engine(url: str) -> Engine:
    """An engine with the pragmas and pool settings this app relies on."""
    settings = get_settings()
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        pool = {} if path in ("", ":memory:") else {  # the same pool as on PostgreSQL
            "pool_size": settings.db_pool_size, "max_overflow": settings.db_pool_size}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,  # see pool_capacity()
        pool_recycle=settings.db_pool_recycle_s,
        connect_args={"connect_timeout": settings.db_connect_timeout_s},
    )
    # Not pre-ping (a round trip per checkout on the hot path): a server that restarted or
    # ended a connection has closed its socket, which a zero-timeout poll sees for free.
    event.listen(engine, "checkout", _drop_if_closed_by_server)
    return engine


def _closed_by_server(dbapi_conn: Any) -> bool:
    """True when the server has closed (or written to) this idle connection: an idle
    connection of a pool that does not LISTEN has nothing to read, unless the server ended
    it (restart, pg_terminate_backend, idle timeout) and its socket is at end of file."""
    if dbapi_conn.closed or dbapi_conn.broken:
        return True
    poll = select.poll()
    poll.register(dbapi_conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poll.poll(0))


def _drop_if_closed_by_server(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    # The pool discards the connection and hands out a new one in its place.
    if _closed_by_server(dbapi_conn):
        raise DisconnectionError("the server closed this pooled connection")


# Errors that mean the database cannot be reached right now, rather than a fault of the
# statement: connection failures (class 08, or no SQLSTATE: refused, reset, timed out),
# the server shutting down or starting up (57P01-57P03) and no free connection slots.
_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_unavailable(exc: BaseException) -> bool:
    """True for an error of a database that is down, restarting or unreachable: the
    request may succeed if retried in a moment (503), unlike a bad statement (500)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if isinstance(orig, psycopg.OperationalError):
        state = orig.sqlstate
        return state is None or state.startswith("08") or state in _OUTAGE_STATES
    return False


def pool_capacity() -> int:
    """How many connections the engine's pool lends at once (pool size + overflow)."""
    return 2 * get_settings().db_pool_size


@lru_cache
def get_engine() -> Engine:
    """The process's engine for the configured database."""
    return make_engine(get_settings().effective_database_url)


@lru_cache
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def SessionLocal() -> Session:  # noqa: N802 - reads like the class it builds
    """A new session on the process's engine."""
    return _session_factory()()


def _finish(session: Session, commit: bool) -> None:
    """Commit or roll back, then close (closing rolls back whatever a failed commit left)."""
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work outside a request (workers, CLI): commit or roll back."""
    session = SessionLocal()
    try:
        yield session
    except BaseException:
        _finish(session, commit=False)
        raise
    _finish(session, commit=True)


async def _finish_in_thread(session: Session, commit: bool) -> None:
    if not session.in_transaction():
        session.close()  # it never connected: nothing to send
        return
    # Not on the shared thread pool: when every pool thread is a request waiting for a row
    # lock this transaction holds, waiting for a pool thread to commit it would never end.
    # Hence a limiter of its own, as FastAPI gives the exits of sync generator dependencies.
    await anyio.to_thread.run_sync(_finish, session, commit, limiter=CapacityLimiter(1))


# Requests holding a session in this process (per event loop), at most the connections the
# pool lends. A request keeps its connection from its first thread (the `allow(...)`
# dependency) to its endpoint's thread; were more requests admitted than there are
# connections, every pool thread could end up waiting for a connection while the requests
# holding one wait for a thread, until the pool's timeout (tests/test_db.py). The others
# wait here, on the event loop, for a turn.
_admission: RunVar[CapacityLimiter] = RunVar("db_admission")


def _admission_limiter() -> CapacityLimiter:
    try:
        return _admission.get()
    except LookupError:
        limiter = CapacityLimiter(pool_capacity())
        _admission.set(limiter)
        return limiter


async def get_session() -> AsyncIterator[Session]:
    """Request dependency: one transaction per request, committed when the route returns.

    Opening a session does no I/O (it connects on first use), so it happens on the event
    loop; committing and closing take one trip to a worker thread, where a sync generator
    takes two (one to open, one to close). A request first waits for its turn among those
    using the database (`_admission`). The hottest routes (lease, submit) commit at
    their end instead, in the worker thread they already run in: a trip costs 0.2–0.4 ms
    of CPU on a small machine, up to a tenth of such a request. Closing a session with
    nothing to commit happens on the event loop.
    """
    admission, turn = _admission_limiter(), object()
    await admission.acquire_on_behalf_of(turn)
    try:
        session = SessionLocal()
        try:
            yield session
        except BaseException:
            await _finish_in_thread(session, False)
            raise
        await _finish_in_thread(session, True)
    finally:
        admission.release_on_behalf_of(turn)


# The request's session: committed when the route function returns, before the response is
# sent, so a client that sees a response can rely on its writes being visible.
DbSession = Annotated[Session, Depends(get_session, scope="function")]


def forget(db: Session, model: Any, row_id: int) -> None:
    """Expire the session's object of this row, if it has one, so it reloads when read:
    for rows a `Sql` statement changed behind the identity map's back."""
    loaded = db.identity_map.get(identity_key(model, row_id))
    if loaded is not None:
        db.expire(loaded)


class Sql:
    """One hand-written statement of a hot path, with `:name` parameters.

    On PostgreSQL it runs on the session's psycopg connection, inside the session's
    transaction, past SQLAlchemy's execution layer: a statement then costs about half the
    CPU of a Core statement and a fifth of an ORM one, which on the lease and submit paths
    was most of the server's time (docs/queue.md). Elsewhere (SQLite) it runs as `text()`
    whose result columns get `types`. Either way rows have attribute access and the same
    Python values: JSON decoded, timestamps timezone-aware, enums as their string values.

    It bypasses the session's identity map: a caller that writes rows the session may have
    loaded expires them (`forget`).
    """

    def __init__(self, statement: str, *, lock: bool = False, stamps: tuple[str, ...] = (),
                 **types: Any) -> None:
        """`lock`: a SELECT that locks its rows (FOR UPDATE; SQLite has no row locks, its
        writers are serialised); `stamps`: the parameters that are timestamps (SQLite stores
        them as text in SQLAlchemy's format); `types`: result columns to convert on SQLite."""
        self.statement = statement.rstrip() + " FOR UPDATE" if lock else statement
        self.pyformat = re.sub(r"(?<!:):(\w+)", r"%(\1)s", self.statement.replace("%", "%%"))
        binds = [bindparam(p, type_=UTCDateTime()) for p in stamps]
        clauses = [text(sql).bindparams(*binds) for sql in (self.statement, statement)]
        self.text, self.portable = (c.columns(**types) if types else c for c in clauses)

    def _run(self, db: Session, params: Mapping[str, Any]) -> Any:
        conn = db.connection()
        if conn.dialect.driver == "psycopg":
            raw = conn.connection.driver_connection
            assert raw is not None  # a checked-out connection
            try:
                return raw.cursor(row_factory=namedtuple_row).execute(self.pyformat, params)
            except psycopg.Error as exc:
                # The exception SQLAlchemy would raise (IntegrityError, OperationalError, …),
                # so callers catch one family of errors whichever way a statement ran; a
                # lost connection is invalidated, as SQLAlchemy does, never pooled again.
                lost = bool(raw.closed or raw.broken)
                if lost:
                    conn.invalidate(exc)
                raise DBAPIError.instance(self.pyformat, params, exc, psycopg.Error,
                                          connection_invalidated=lost) from exc
        return conn.execute(self.text if conn.dialect.name == "postgresql" else self.portable,
                            params)

    def all(self, db: Session, params: Mapping[str, Any]) -> list[Any]:
        """Every row."""
        return list(self._run(db, params).fetchall())

    def first(self, db: Session, params: Mapping[str, Any]) -> Any | None:
        """The first row, or None."""
        return self._run(db, params).fetchone()

    def one(self, db: Session, params: Mapping[str, Any]) -> Any:
        """The one row (an INSERT … RETURNING)."""
        row = self._run(db, params).fetchone()
        if row is None:
            raise LookupError("the statement returned no row")
        return row

    def rowcount(self, db: Session, params: Mapping[str, Any]) -> int:
        """Run a write; how many rows it changed."""
        return int(self._run(db, params).rowcount)


def alembic_config(url: str | None = None) -> Config:
    """Alembic configured for this project's migrations and a database URL."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url or get_settings().effective_database_url)
    return cfg


@lru_cache
def migration_heads() -> frozenset[str]:
    """The newest revisions of the migration scripts (read once: they ship with the code)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def pending_migrations(engine: Engine) -> bool:
    """True when the database is behind the migration scripts."""
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current != migration_heads()
