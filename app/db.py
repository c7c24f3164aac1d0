"""Engine, session factory, declarative Base and the request session dependency."""

import os
import select
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
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
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
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


class WriteTurns:
    """SQLite's one write lock, as this process's threads take it: waiting on a lock that
    wakes them when it is released, rather than on SQLite's busy handler.

    The busy handler sleeps and polls (1, 2, 5 ... up to 100 ms between tries), so the lock
    stays idle while its waiters sleep, and one that arrives as it is freed can take it
    ahead of one that has waited for seconds: under twenty labelers the slowest lease
    waited 4-8 s beside a median of 50 ms, and a wait past RLHF_DB_LOCK_TIMEOUT_S is a 503.
    Here the release wakes a waiter at once, in about the order they came (a thread that
    is running as it is released may still go first, which keeps the lock busy while the
    woken one is scheduled). The busy handler still orders this process's one writer
    against other processes (workers, the CLI)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # released by whichever thread ends the transaction

    def take(self, timeout: float) -> bool:
        """Wait for this thread's turn to write; False when `timeout` seconds pass first."""
        return self._lock.acquire(timeout=timeout)

    def give(self) -> None:
        """End this writer's turn."""
        self._lock.release()

    def forget(self) -> None:
        """A forked child starts with no writer (the parent's are not its threads)."""
        self._lock = threading.Lock()


# One per database file in this process: every engine on the file writes in the same turns.
_write_turns: dict[str, WriteTurns] = {}


def _forget_write_turns() -> None:
    for turns in _write_turns.values():
        turns.forget()


os.register_at_fork(after_in_child=_forget_write_turns)


class _TurnTakingConnection(sqlite3.Connection):
    """A pysqlite connection that holds its file's write turn from `BEGIN IMMEDIATE` until
    its transaction ends, however it ends (commit, rollback, the pool's reset, close)."""

    turns: WriteTurns
    holds_turn = False

    def take_turn(self, timeout: float) -> None:
        """Wait for the file's write turn; past `timeout`, a "database is locked" error."""
        if not self.turns.take(timeout):
            raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(
                f"database is locked: no turn to write within {timeout:g} s"))
        self.holds_turn = True

    def give_turn(self) -> None:
        """Give the turn back if this connection holds it and its transaction has ended."""
        if self.holds_turn and not self.in_transaction:
            self.holds_turn = False
            self.turns.give()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.give_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.give_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.holds_turn:
                self.holds_turn = False
                self.turns.give()


def _sqlite_engine(url: str) -> Engine:
    """An engine on a SQLite file: WAL, foreign keys, and write transactions that begin
    IMMEDIATE in this process's turns."""
    settings = get_settings()
    path = make_url(url).database or ""
    memory = path in ("", ":memory:")
    if not memory:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    pool = {} if memory else {  # the same pool as on PostgreSQL
        "pool_size": settings.db_pool_size, "max_overflow": settings.db_pool_size}
    wait_s = settings.db_lock_timeout_s
    turns = WriteTurns() if memory else _write_turns.setdefault(
        str(Path(path).resolve()), WriteTurns())
    engine = create_engine(url, connect_args={
        "check_same_thread": False, "timeout": wait_s, "factory": _TurnTakingConnection},
        **pool)
    event.listen(engine, "connect", _sqlite_pragmas(wait_s, turns))
    event.listen(engine, "begin", _sqlite_begin(wait_s))
    return engine


def _sqlite_pragmas(wait_s: float, turns: WriteTurns) -> Callable[..., None]:
    """A new connection's settings: foreign keys, WAL, the lock wait, and this file's turns."""

    def on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
        cur.close()
        # pysqlite would begin a transaction only before a write, so reads ran outside
        # it and a SAVEPOINT could begin (and its RELEASE commit) the transaction.
        # SQLAlchemy begins it instead (_sqlite_begin).
        dbapi_conn.isolation_level = None
        dbapi_conn.turns = turns

    return on_connect


def _sqlite_begin(wait_s: float) -> Callable[..., None]:
    """How a transaction begins on SQLite.

    IMMEDIATE: SQLite has no row locks, so a unit of work takes the database's one write
    lock when it begins, waiting its turn (WriteTurns in this process, then busy_timeout
    against others: RLHF_DB_LOCK_TIMEOUT_S bounds each), as PostgreSQL's `FOR UPDATE`
    waits for the task row. A deferred transaction that read first and wrote after another
    had committed would fail ("database is locked") instead of waiting: busy_timeout does
    not apply to that upgrade. Read-only work begins DEFERRED (`read_only_session`), so a
    long read neither holds nor waits for the lock (WAL).
    """

    def on_begin(conn):  # type: ignore[no-untyped-def]
        mode = conn.get_execution_options().get(_BEGIN, "IMMEDIATE")
        if not mode:  # None: no transaction, each statement on its own (test observers)
            return
        dbapi_conn = conn.connection.dbapi_connection
        if mode == "IMMEDIATE":
            dbapi_conn.take_turn(wait_s)
        try:
            conn.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            dbapi_conn.give_turn()
            raise

    return on_begin


def make_engine(url: str) -> Engine:
    """An engine with the pragmas and pool settings this app relies on."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    settings = get_settings()
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
    if isinstance(orig, sqlite3.OperationalError):
        # SQLite's one write lock held past RLHF_DB_LOCK_TIMEOUT_S (a long import or export
        # writing): busy for now, as a PostgreSQL restart is; the request may be retried.
        return "database is locked" in str(orig) or "database is busy" in str(orig)
    if isinstance(orig, psycopg.OperationalError):
        state = orig.sqlstate
        return state is None or state.startswith("08") or state in _OUTAGE_STATES
    return False


# The execution option that picks how a SQLite transaction begins (IMMEDIATE unless set;
# DEFERRED for read-only work; None for none at all).
_BEGIN = "sqlite_begin"


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


@lru_cache
def read_only_engine() -> Engine:
    """The process's engine for work that only reads: on SQLite its transactions begin
    DEFERRED, so they neither take nor wait for the write lock (see `make_engine`)."""
    return get_engine().execution_options(**{_BEGIN: "DEFERRED"})


def read_only_session() -> Session:
    """A session for work that only reads (a long export, a page's side lookup): on SQLite
    its transaction begins DEFERRED, so it neither takes nor waits for the write lock.
    Writing through it may fail with "database is locked" when another writer went first.
    """
    return Session(bind=read_only_engine(), expire_on_commit=False)


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
def session_scope(*, read_only: bool = False) -> Iterator[Session]:
    """One unit of work outside a request (workers, CLI): commit or roll back.

    `read_only`: see `read_only_session`."""
    session = read_only_session() if read_only else SessionLocal()
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
    their end instead (`commit_here`), in the worker thread they already run in: a trip
    costs 0.2–0.4 ms of CPU on a small machine, up to a tenth of such a request. Closing
    a session with nothing to commit happens on the event loop.
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


def commit_here(db: Session) -> None:
    """Commit the request's transaction now, at the end of a sync route, in the worker
    thread it already runs in; `get_session` then has nothing left to commit and closes
    the session on the event loop. For the hottest routes (lease, submit): the worker-thread
    trip it saves costs 0.2–0.4 ms of CPU. Write nothing after it."""
    db.commit()


# The request's session: committed when the route function returns, before the response is
# sent, so a client that sees a response can rely on its writes being visible.
DbSession = Annotated[Session, Depends(get_session, scope="function")]


def alembic_config(url: str | None = None) -> Config:
    """Alembic configured for this project's migrations and a database URL.

    Its target metadata is Base.metadata as loaded so far: autogenerate compares the whole
    schema only once every domain's tables are imported (`import app.models`, a face-level
    module: the core knows no domain)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url or get_settings().effective_database_url)
    cfg.attributes["target_metadata"] = Base.metadata
    return cfg


@lru_cache
def migration_heads() -> frozenset[str]:
    """The newest revisions of the migration scripts (read once: they ship with the code)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def pending_migrations(engine: Engine) -> bool:
    """True when the database is behind the migration scripts."""
    with engine.execution_options(**{_BEGIN: "DEFERRED"}).connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current != migration_heads()
