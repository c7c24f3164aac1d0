"""Shared fixtures: a migrated test database (PostgreSQL by default, SQLite with
RLHF_TEST_DB=sqlite), a rolled-back session per test, and an HTTP client on the app.

Each test runs inside one outer transaction that is rolled back afterwards (SQLAlchemy's
join_transaction_mode="create_savepoint"), so service code may commit freely. Tests that
need truly committed rows (concurrency, a live server) use `committed_db` instead, which
empties every table afterwards.
"""

import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

BACKEND = os.environ.get("RLHF_TEST_DB", "postgresql")
PG_BASE = os.environ.get(
    "RLHF_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/rlhf_test"
)
_DATA_DIR = Path(tempfile.mkdtemp(prefix="rlhf-test-"))


def _database_url() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if BACKEND == "sqlite":
        return f"sqlite:///{_DATA_DIR / f'test{worker}.sqlite'}"
    return PG_BASE + (f"_{worker}" if worker else "")


def _redis_url() -> str:
    """The tests' Redis database; under xdist each worker has one of its own, counting down
    from the one given (gw0 on it, gw1 on the one below): the tests that start Celery workers
    empty their database first, and two workers on one database take each other's tasks."""
    url = os.environ.get("RLHF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db - int(worker[2:])) % 16}"))


# Settings are read from the environment once: set it before anything imports app.*.
os.environ["RLHF_TEST_REDIS_URL"] = _redis_url()  # what the tests' modules read
os.environ["RLHF_DATABASE_URL"] = _database_url()
os.environ["RLHF_DATA_DIR"] = str(_DATA_DIR)
os.environ["RLHF_ENV"] = "test"
os.environ.setdefault("RLHF_SECRET_KEY", "test-secret-key-not-for-production")
os.environ["RLHF_MODELS_DIR"] = str(_DATA_DIR / "models")
os.environ["RLHF_EXPORTS_DIR"] = str(_DATA_DIR / "exports")
os.environ["RLHF_TRAIN_THREADS"] = "1"  # training children on a shared 2-core machine
os.environ["RLHF_JOB_HEARTBEAT_S"] = "0.5"
os.environ["RLHF_ROUND_MIN_DEMONSTRATIONS"] = "6"
os.environ["RLHF_ROUND_MIN_RANKINGS"] = "6"

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.wiring import wire  # noqa: E402
from tests.factories import login  # noqa: E402,F401  - re-exported for tests

wire()  # every table, job kind and registered handler, as in the web and worker processes


def _recreate_postgres_database(url: str) -> None:
    name = re.sub(r".*/", "", url)
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


# The slow set's longest tests (their files, or one test), longest first as measured on 2
# cores. Under xdist they are handed out first, so that no worker is left alone with one of
# them at the end; run with --maxschedchunk 1, which hands the rest out one at a time.
LONGEST_FIRST = (
    "tests/simulation/test_loop.py",  # 160 s
    "tests/jobs/test_worker_loop.py",  # 7 tests, 5-40 s each
    "tests/test_api_contract.py::test_api_answers_as_its_spec_says_long",  # 3 x 50 s
    "tests/training/test_processes.py",  # 50 s
    "tests/e2e/test_loop.py",  # 50 s with its worker's teardown
    "tests/jobs/test_hosts.py",  # 40 s
    "tests/test_embedded_sqlite.py",  # 40 s
    "tests/training/test_tiny.py::test_default_tiny_base",  # 22 s
    "tests/jobs/test_resend.py",  # 20 s
)


def _longest_first(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST)
                     if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order, a file's tests stay together


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _longest_first(items)
    if BACKEND != "sqlite":
        return
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (RLHF_TEST_DB=sqlite run)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip_pg)
    # The SQLite run repeats what touches the database under test; the rest ran already.
    kept = [item for item in items
            if {"engine", "scratch_url"} & set(getattr(item, "fixturenames", ()))]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    """The process's engine on a freshly migrated test database."""
    from alembic import command

    from app.db import alembic_config, get_engine

    url = _database_url()
    if BACKEND != "sqlite":
        _recreate_postgres_database(url)
    command.upgrade(alembic_config(url), "head")
    eng = get_engine()
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    """A session whose work is rolled back after the test."""
    conn = engine.connect()
    outer = conn.begin()  # on SQLite too a real BEGIN (app.db.make_engine)
    session = Session(bind=conn, join_transaction_mode="create_savepoint",
                      expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        conn.close()


def _truncate_all(engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import OperationalError

    import app.models  # noqa: F401
    from app.db import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    # A browser test's pages may still be saving a draft (a keepalive request when the page
    # closes) while this runs: on a deadlock with that write, try again.
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                else:
                    for table in reversed(Base.metadata.sorted_tables):
                        # A row refers to a row of its own table (a job to the attempt it
                        # retries), with RESTRICT, which SQLite checks row by row.
                        for fk in table.foreign_keys:
                            if fk.column.table is table:
                                conn.execute(table.update().values({fk.parent.name: None}))
                        conn.execute(table.delete())
            return
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.2)


@pytest.fixture
def committed_db(engine) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    """A session on the real database; every table is emptied afterwards.

    It looks on while the code under test commits in sessions of its own, so each of its
    statements sees what was committed before it, as under PostgreSQL's READ COMMITTED: on
    SQLite it runs outside any transaction (a transaction there would keep its first
    snapshot, and hold the write lock, which the code under test waits for)."""
    from app.db import SessionLocal

    _truncate_all(engine)
    if engine.dialect.name == "sqlite":
        session = Session(bind=engine.execution_options(sqlite_begin=None),
                          expire_on_commit=False)
    else:
        session = SessionLocal()
    try:
        yield session
    finally:
        session.close()
        _truncate_all(engine)


@pytest.fixture
def app(engine):  # type: ignore[no-untyped-def]
    """The application, built as production builds it."""
    from app.main import create_app

    return create_app()


@pytest.fixture
def client(app, db):  # type: ignore[no-untyped-def]
    """An HTTP client whose requests run in the test's rolled-back transaction."""
    from fastapi.testclient import TestClient

    from app.db import get_session

    def _session() -> Iterator[Session]:
        # Like session_scope: a route that raises leaves nothing of its work behind.
        nested = db.begin_nested()
        try:
            yield db
            db.flush()
        except BaseException:
            if nested.is_active:
                nested.rollback()
            raise
        else:
            if nested.is_active:
                nested.commit()

    app.dependency_overrides[get_session] = _session
    with TestClient(app) as c:
        yield c
    app.dependency_overrides.clear()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A warmed-up tiny GPT-2 + BPE tokenizer directory (tests/tiny.py's TINY), built once per
    process and shared by every test that trains from it (the training tests, the loop's
    gaming tests); none writes into it."""
    import torch

    from tests.tiny import TINY
    from training.tiny import build_tiny

    torch.set_num_threads(1)  # the machine is shared; one thread is faster under load
    return build_tiny(tmp_path_factory.mktemp("tiny") / "base", TINY)


@pytest.fixture(scope="module")
def s3():  # type: ignore[no-untyped-def]
    """A real S3 API, moto's server on a free port, for the shared store's tests."""
    from tests.s3 import MotoS3

    server = MotoS3()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def prefix() -> str:
    """A prefix of the bucket of its own: a test's store, apart from the others'."""
    import uuid

    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store_env(s3, prefix) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """This process's settings with the store: what a worker started with them reads."""
    from app.config import get_settings

    with pytest.MonkeyPatch.context() as mp:
        values = s3.settings(prefix)
        for name, value in values.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        yield values
    get_settings.cache_clear()
