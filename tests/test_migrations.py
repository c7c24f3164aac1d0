"""Migrations go from empty to head and back down, and the app refuses an unmigrated database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

import app.models  # noqa: F401
from app.db import Base, alembic_config, make_engine, pending_migrations
from tests.conftest import _DATA_DIR, BACKEND, PG_BASE


@pytest.fixture
def scratch_url():  # type: ignore[no-untyped-def]
    """An empty database of the backend under test, dropped afterwards."""
    if BACKEND == "sqlite":
        path = _DATA_DIR / "scratch.sqlite"
        path.unlink(missing_ok=True)
        yield f"sqlite:///{path}"
        path.unlink(missing_ok=True)
        return
    admin_url = PG_BASE.rsplit("/", 1)[0] + "/postgres"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"rlhf_scratch_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_BASE.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.slow
def test_migrations_upgrade_from_empty_and_downgrade_to_base(scratch_url):
    engine = make_engine(scratch_url)
    cfg = alembic_config(scratch_url)
    assert pending_migrations(engine)
    command.upgrade(cfg, "head")
    assert not pending_migrations(engine)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(cfg, "head")  # and up again: downgrades leave nothing behind
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migration_graph_has_one_head():
    """One line of revisions: `alembic revision` works and `downgrade -1` is unambiguous."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migration heads: {heads}; add a merge revision"


@pytest.mark.slow
def test_downgrade_one_step_from_head_then_up_again(scratch_url):
    engine = make_engine(scratch_url)
    cfg = alembic_config(scratch_url)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "-1")
    assert pending_migrations(engine)
    command.upgrade(cfg, "head")
    assert not pending_migrations(engine)
    engine.dispose()


def test_models_match_migrations(engine):
    """Autogenerate finds nothing to add: every model change came with a migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


@pytest.mark.slow
def test_app_refuses_unmigrated_database_with_the_fix(scratch_url):
    env = {**os.environ, "RLHF_DATABASE_URL": scratch_url}
    proc = subprocess.run(
        [sys.executable, "-c", "from app.main import create_app; create_app()"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "rlhf-studio db upgrade" in proc.stderr


@pytest.mark.slow
def test_database_stamped_at_the_three_former_heads_upgrades_to_one(scratch_url):
    """Before 0006 the three branches were separate heads; such a database still upgrades."""
    engine = make_engine(scratch_url)
    cfg = alembic_config(scratch_url)
    command.upgrade(cfg, "0005_exports")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        for rev in ("0002_queue", "0003_labeling", "0005_exports"):
            conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": rev})
    command.upgrade(cfg, "head")
    assert not pending_migrations(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_migration_files_sort_in_run_order():
    """Listing versions/ shows the migrations in the order they run (ids stay as released)."""
    from alembic.script import ScriptDirectory

    from app.db import MIGRATIONS_DIR

    script = ScriptDirectory.from_config(alembic_config())
    chain = [Path(rev.path).name for rev in reversed(list(script.walk_revisions()))]
    files = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py"))
    assert files == chain
    numbers = [name.split("_", 1)[0] for name in files]
    assert len(set(numbers)) == len(numbers), f"two migrations share a number: {numbers}"


def test_migrations_import_nothing_of_the_app():
    """A migration must keep working however the app's code changes later."""
    from app.db import MIGRATIONS_DIR

    for path in [MIGRATIONS_DIR / "env.py", MIGRATIONS_DIR / "script.py.mako",
                 *sorted((MIGRATIONS_DIR / "versions").glob("*.py"))]:
        for line in path.read_text().splitlines():
            assert not line.lstrip().startswith(("import app", "from app")), (path.name, line)



@pytest.mark.slow
def test_invariants_upgrade_refuses_rows_that_break_them_and_changes_nothing(scratch_url):
    engine = make_engine(scratch_url)
    cfg = alembic_config(scratch_url)
    command.upgrade(cfg, "0005_exports")
    with engine.begin() as conn:  # a rate task counted twice for its one slot
        conn.execute(text(
            "INSERT INTO tasks (kind, candidate_ids, required_labels, done_labels,"
            " leased_labels, priority, gold, params, state, created_at) VALUES ('rate', '[]',"
            " 1, 1, 1, 0, false, '{}', 'open', '2024-01-01 00:00:00+00:00')"))
    with pytest.raises(RuntimeError, match="1 tasks whose counters are out of range"):
        command.upgrade(cfg, "head")
    # PostgreSQL upgrades in one transaction; SQLite commits migration by migration, so
    # there the ones before 0007 stay applied. 0007 itself changed nothing on either.
    before = "0005_exports" if engine.dialect.name == "postgresql" else "0011_evaluation"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == before
    with engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET leased_labels = 0"))
    command.upgrade(cfg, "head")
    assert not pending_migrations(engine)
    engine.dispose()
