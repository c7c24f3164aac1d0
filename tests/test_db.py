"""The request session (`app.db.get_session`) on the real database, without test
overrides, and the hot paths' driver-level statements (`app.statements.Sql`)."""

import logging
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from app.config import get_settings
from app.db import DbSession, database_unavailable, make_engine, utcnow
from app.prompts.models import UseCase
from app.queue.models import Task, TaskKind
from app.statements import Sql
from tests.factories import make_task


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/ok/{name}")
    def ok(db: DbSession, name: str) -> dict[str, int]:
        row = UseCase(name=name)
        db.add(row)
        db.flush()
        return {"id": row.id}

    @app.post("/fail/{name}")
    def fail(db: DbSession, name: str) -> None:
        db.add(UseCase(name=name))
        db.flush()
        raise HTTPException(409, "refused after writing")

    @app.get("/idle")
    def idle(db: DbSession) -> dict[str, bool]:
        return {"in_transaction": db.in_transaction()}

    return app


def _names(db) -> list[str]:  # type: ignore[no-untyped-def]
    db.rollback()  # a fresh snapshot
    return list(db.scalars(select(UseCase.name).order_by(UseCase.name)))


def test_request_commits_before_the_response_and_rolls_back_on_error(committed_db):
    with TestClient(_app()) as client:
        assert client.post("/ok/kept").status_code == 200
        # Visible to another connection as soon as the response arrived.
        assert _names(committed_db) == ["kept"]
        assert client.post("/fail/dropped").status_code == 409
        assert client.get("/idle").json() == {"in_transaction": False}
    assert _names(committed_db) == ["kept"]


def test_request_sessions_return_their_connections(committed_db, engine):
    pool = engine.pool
    with TestClient(_app()) as client:
        for i in range(pool.size() + 5):  # more requests than the pool holds
            assert client.post(f"/ok/n{i}").status_code == 200
            assert client.post(f"/fail/f{i}").status_code == 409
    assert committed_db.scalar(select(func.count()).select_from(UseCase)) == pool.size() + 5
    assert pool.checkedout() <= 1  # only committed_db's own connection


def test_request_commit_does_not_wait_for_a_free_pool_thread(committed_db):
    """Requests blocked on a row lock may hold every pool thread; the commit that frees
    the lock must not need one of them."""
    import asyncio
    import threading

    import anyio.to_thread
    import httpx

    app = FastAPI()

    @app.post("/async/{name}")
    async def write(db: DbSession, name: str) -> dict[str, str]:
        db.add(UseCase(name=name))
        db.flush()
        return {"name": name}

    state: dict = {}

    def release() -> None:
        for holder in state.pop("holders", []):
            state["limiter"].release_on_behalf_of(holder)

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["limiter"] = limiter = anyio.to_thread.current_default_thread_limiter()
        state["holders"] = [object() for _ in range(int(limiter.total_tokens))]
        for holder in state["holders"]:
            await limiter.acquire_on_behalf_of(holder)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                state["status"] = (await client.post("/async/committed")).status_code
        finally:
            release()

    # The exit of a dependency cannot be cancelled, so a hang is detected from outside
    # and then undone by handing the pool threads back.
    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    runner.join(timeout=15)
    hung = runner.is_alive()
    if hung:
        state["loop"].call_soon_threadsafe(release)
        runner.join(timeout=15)
    assert not hung, "the commit waited for a pool thread"
    assert state["status"] == 200
    assert _names(committed_db) == ["committed"]


class _TaskRead(NamedTuple):
    id: int
    kind: str
    candidate_ids: list[int]
    params: dict[str, Any]
    created_at: datetime


class _Count(NamedTuple):
    n: int


def test_sql_reads_and_writes_the_values_the_orm_does(db):
    """`Sql` (driver-level on PostgreSQL, typed text() on SQLite) agrees with the ORM."""
    task = make_task(db, TaskKind.rank, k=4)
    read = Sql("SELECT id, kind, candidate_ids, params, created_at FROM tasks WHERE id = :id",
               _TaskRead, lock=True)
    row = read.one(db, {"id": task.id})
    assert isinstance(row, _TaskRead)
    assert (row.id, row.kind, row.candidate_ids, row.params) == (
        task.id, "rank", task.candidate_ids, task.params)
    assert row.created_at == task.created_at and row.created_at.utcoffset() == timedelta(0)
    assert read.first(db, {"id": -1}) is None

    closed = utcnow()
    close = Sql("UPDATE tasks SET closed_at = :at WHERE id = :id", stamps=("at",))
    assert close.rowcount(db, {"at": closed, "id": task.id}) == 1
    db.expire(task)
    assert task.closed_at == closed  # the ORM reads what the statement wrote
    earlier = Sql("SELECT count(*) AS n FROM tasks WHERE closed_at < :at", _Count,
                  stamps=("at",))
    assert earlier.one(db, {"at": closed + timedelta(microseconds=1)}).n == 1
    assert earlier.one(db, {"at": closed}).n == 0
    # A timestamp the ORM wrote compares equal to the same instant passed as a parameter
    # (on SQLite both are text, so they must be in the same format).
    created = Sql("SELECT count(*) AS n FROM tasks WHERE id = :id AND created_at < :at",
                  _Count, stamps=("at",))
    assert created.one(db, {"id": task.id, "at": task.created_at}).n == 0
    assert db.get(Task, task.id) is task


def test_sql_refuses_a_row_type_that_does_not_match_its_columns(db):
    task = make_task(db)
    swapped = Sql("SELECT kind, id, candidate_ids, params, created_at FROM tasks"
                  " WHERE id = :id", _TaskRead)
    with pytest.raises(TypeError, match="_TaskRead has fields"):
        swapped.first(db, {"id": task.id})


def test_a_write_forgets_the_rows_it_declares(db):
    """The session's loaded object of a row a statement changed is reloaded when read."""
    task = make_task(db, overlap=3)
    assert task.done_labels == 0
    counted = Sql("UPDATE tasks SET done_labels = done_labels + 1 WHERE id = :task_id",
                  changes={"task_id": Task})
    counted.rowcount(db, {"task_id": task.id})
    assert task.done_labels == 1
    silent = Sql("UPDATE tasks SET done_labels = done_labels + 1 WHERE id = :task_id")
    silent.rowcount(db, {"task_id": task.id})
    assert task.done_labels == 1  # undeclared: the session still holds the old value


def test_every_statement_is_logged_at_debug(db, caplog):
    task = make_task(db)
    read = Sql("SELECT count(*) AS n FROM tasks WHERE id = :id", _Count)
    with caplog.at_level(logging.DEBUG, logger="app.statements"):
        assert read.one(db, {"id": task.id}).n == 1
    [record] = [r for r in caplog.records if r.name == "app.statements"]
    assert "SELECT count(*) AS n FROM tasks WHERE id = :id" in record.getMessage()
    assert f"'id': {task.id}" in record.getMessage()
    caplog.clear()
    read.one(db, {"id": task.id})  # not at DEBUG: nothing
    assert not [r for r in caplog.records if r.name == "app.statements"]


def test_sql_raises_sqlalchemys_errors(db):
    """A failed driver-level statement raises what a SQLAlchemy statement would."""
    task = make_task(db)
    again = Sql("INSERT INTO tasks (id, kind, candidate_ids, required_labels, done_labels,"
                " leased_labels, priority, gold, params, state, created_at) VALUES (:id,"
                " 'demonstrate', '[]', 1, 0, 0, 0, false, '{}', 'open', :at)", stamps=("at",))
    with pytest.raises(IntegrityError), db.begin_nested():
        again.rowcount(db, {"id": task.id, "at": task.created_at})


def test_more_requests_than_connections_queue_instead_of_stalling(committed_db, engine):
    """A request holds its connection from its first (dependency) thread to its endpoint
    thread. With more requests than connections, the pool threads must not all end up
    waiting for a connection while the requests holding one wait for a thread."""
    import asyncio
    import concurrent.futures
    from typing import Annotated

    import anyio.to_thread
    import httpx
    from fastapi import Depends

    app = FastAPI()

    def counted(db: DbSession) -> int:  # like allow(...): a sync dependency reading the db
        return int(db.scalar(select(func.count()).select_from(UseCase)) or 0)

    @app.post("/held/{name}")
    def held(db: DbSession, before: Annotated[int, Depends(counted)], name: str) -> dict:
        db.add(UseCase(name=name))
        db.flush()
        return {"before": before}

    async def main() -> list[int]:
        threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        n = max(threads, engine.pool.size() * 2) * 3  # more than threads and connections
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                     timeout=120) as client:
            sent = [client.post(f"/held/r{i}") for i in range(n)]
            return [r.status_code for r in await asyncio.gather(*sent)]

    # On a thread of its own: the test process may already run an event loop (Playwright).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        statuses = pool.submit(asyncio.run, main()).result(timeout=300)
    assert statuses == [200] * len(statuses)
    assert committed_db.scalar(select(func.count()).select_from(UseCase)) == len(statuses)


# --- SQLite's one write lock, taken in turns (app.db.WriteTurns) --------------------------


def _sqlite_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'turns.sqlite'}")
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    return eng


def _write_in_thread(eng, n: int, done: list[int]) -> threading.Thread:  # type: ignore[no-untyped-def]
    def write() -> None:
        with eng.begin() as conn:
            done.append(n)
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (n,))

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_sqlite_writers_take_the_write_lock_in_the_order_they_asked(tmp_path):
    """SQLite's busy handler polls with growing sleeps, so the writer that waited longest
    polls least often and the last to come often goes first (a lease waited 8 s under
    twenty labelers, beside a median of 50 ms). Turns go in the order they were asked."""
    eng = _sqlite_file(tmp_path)
    holder = eng.connect()
    holder.begin()
    order: list[int] = []
    threads = []
    for n in range(8):
        threads.append(_write_in_thread(eng, n, order))
        time.sleep(0.15)  # each asks while the ones before it are waiting
    holder.commit()
    for thread in threads:
        thread.join(timeout=30)
    holder.close()
    eng.dispose()
    assert order == list(range(8))


@pytest.mark.parametrize("end", ["commit", "rollback", "close", "invalidate"])
def test_a_sqlite_write_transaction_gives_up_its_turn_however_it_ends(tmp_path, end):
    eng = _sqlite_file(tmp_path)
    conn = eng.connect()
    conn.begin()
    conn.exec_driver_sql("INSERT INTO t VALUES (0)")
    getattr(conn, end)()
    done: list[int] = []
    _write_in_thread(eng, 1, done).join(timeout=5)  # not the 30 s lock timeout
    conn.close()
    eng.dispose()
    assert done == [1]


def test_a_sqlite_writer_kept_waiting_past_the_lock_timeout_is_told_the_database_is_busy(
        tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "db_lock_timeout_s", 0.3)
    eng = _sqlite_file(tmp_path)
    holder = eng.connect()
    holder.begin()
    try:
        with pytest.raises(OperationalError) as caught, eng.begin():
            pass
    finally:
        holder.close()
    # Unavailable for now (503 with Retry-After), not a fault (500); the turn is not lost.
    assert database_unavailable(caught.value) and "database is locked" in str(caught.value)
    done: list[int] = []
    _write_in_thread(eng, 1, done).join(timeout=5)
    eng.dispose()
    assert done == [1]
