"""What a request pays to find its user and to survive a PostgreSQL restart.

    .venv/bin/python bench/bench_checkout.py [--n 5000] [--rounds 3]

Runs on a database of its own (rlhf_bench_checkout, dropped afterwards) and prints, per
operation, wall and CPU microseconds, best of `--rounds` interleaved rounds (the machine
may be shared):

Pool checkout + `SELECT 1`, three ways of dealing with connections the server closed:
- none:      no check (such a connection fails its request);
- poll:      app.db's check, a zero-timeout poll of the socket (a closed one is readable);
- pre-ping:  SQLAlchemy's pool_pre_ping, a round trip to the server per checkout.

A cookie request's user, in a fresh session as a request has:
- by id:       `db.get(User, id)`, the lookup of a cookie that carried the user id;
- by session:  `service.user_for_session`, the session row and its user in one query.
"""

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DB_NAME = "rlhf_bench_checkout"
URL = SERVER + DB_NAME
os.environ.update(RLHF_DATABASE_URL=URL, RLHF_ENV="development",
                  RLHF_DATA_DIR=tempfile.mkdtemp(prefix="rlhf-bench-checkout-"))

from sqlalchemy import create_engine, text  # noqa: E402


def _recreate(drop_only: bool = False) -> None:
    admin = create_engine(SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        if not drop_only:
            conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    admin.dispose()


def _checkout_cycle(engine) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    def cycle() -> None:
        raw = engine.raw_connection()
        cur = raw.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        cur.close()
        raw.rollback()
        raw.close()

    return cycle


def _time(cycle: Callable[[], None], n: int) -> tuple[float, float]:
    for _ in range(min(n, 500)):
        cycle()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        cycle()
    return ((time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6)


def _table(title: str, cycles: dict[str, Callable[[], None]], n: int, rounds: int) -> None:
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, cycle in cycles.items():
            wall, cpu = _time(cycle, n)
            prev = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(prev[0], wall), min(prev[1], cpu))
    base_wall, base_cpu = next(iter(best.values()))
    print(f"\n{title:28} {'wall µs':>9} {'cpu µs':>9} {'+wall':>8} {'+cpu':>8}")
    for name, (wall, cpu) in best.items():
        print(f"  {name:26} {wall:9.1f} {cpu:9.1f} {wall - base_wall:+8.1f} "
              f"{cpu - base_cpu:+8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _recreate()
    try:
        from alembic import command

        import app.models  # noqa: F401 - every table, so foreign keys resolve
        from app.auth import service
        from app.auth.models import Role, User
        from app.db import SessionLocal, alembic_config, make_engine, session_scope

        command.upgrade(alembic_config(URL), "head")
        engines = {
            "none": create_engine(URL, pool_size=1),
            "poll": make_engine(URL),
            "pre-ping": create_engine(URL, pool_size=1, pool_pre_ping=True),
        }
        _table("checkout + SELECT 1", {k: _checkout_cycle(e) for k, e in engines.items()},
               args.n, args.rounds)
        for engine in engines.values():
            engine.dispose()

        with session_scope() as db:
            user = service.create_user(db=db, email="bench@example.com", role=Role.labeler,
                                       password="bench password")
            user_id, secret = user.id, service.start_session(db=db, user=user)

        def by_id() -> None:
            db = SessionLocal()
            assert db.get(User, user_id) is not None
            db.close()

        def by_session() -> None:
            db = SessionLocal()
            assert service.user_for_session(db=db, secret=secret) is not None
            db.close()

        _table("cookie → user", {"by id (ORM get)": by_id, "by session (Sql join)": by_session},
               args.n, args.rounds)
    finally:
        from app.db import get_engine

        get_engine().dispose()
        _recreate(drop_only=True)


if __name__ == "__main__":
    main()
