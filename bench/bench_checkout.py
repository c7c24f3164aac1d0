"""What finding a dead pooled connection costs a request, three ways, on PostgreSQL.

    .venv/bin/python bench/bench_checkout.py [--n 20000]

Every request checks a connection out of the pool once. This times, per checkout + the
one statement a cheap request runs (`SELECT 1`), in wall and CPU microseconds:

- none:      no check (a connection the server closed fails its request);
- poll:      app.db's check, a zero-timeout poll of the socket (a closed one is readable);
- pre-ping:  SQLAlchemy's pool_pre_ping, a round trip to the server per checkout.

The extra cost of each over `none` is what the hot path pays for recovering the pool
after a PostgreSQL restart without a failed request.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
URL = os.environ.get("RLHF_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
os.environ.setdefault("RLHF_DATA_DIR", tempfile.mkdtemp(prefix="rlhf-bench-"))

from sqlalchemy import create_engine, event  # noqa: E402

from app.db import _drop_if_closed_by_server, make_engine  # noqa: E402


def _engines() -> dict[str, object]:
    return {
        "none": create_engine(URL, pool_size=1),
        "poll": make_engine(URL),
        "pre-ping": create_engine(URL, pool_size=1, pool_pre_ping=True),
    }


def _time(engine, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    def cycle() -> None:
        raw = engine.raw_connection()
        cur = raw.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        cur.close()
        raw.rollback()
        raw.close()

    for _ in range(500):
        cycle()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        cycle()
    return ((time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    engines = _engines()
    assert event.contains(engines["poll"], "checkout", _drop_if_closed_by_server)
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):  # interleaved, best of: the machine is shared
        for name, engine in engines.items():
            wall, cpu = _time(engine, args.n)
            prev = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(prev[0], wall), min(prev[1], cpu))
    base_wall, base_cpu = best["none"]
    print(f"{'':10} {'wall µs':>9} {'cpu µs':>9} {'+wall':>8} {'+cpu':>8}")
    for name, (wall, cpu) in best.items():
        print(f"{name:10} {wall:9.1f} {cpu:9.1f} {wall - base_wall:+8.1f} {cpu - base_cpu:+8.1f}")


if __name__ == "__main__":
    main()
