"""Benchmark: the agreement page's whole computation for 100k rankings from PostgreSQL.

Builds its own database (rlhf_bench_agreement), bulk-loads ~60 labelers ranking K = 4..9
candidates with overlap ~3 (plus one rating per candidate, some skips and gold tasks) with
COPY, then times the page cold (empty cache) and warm (cached). Target: cold < 5 s.
Beside wall time it prints the CPU seconds of this process and of its PostgreSQL backend
(parallel workers not included), which stay meaningful on a busy machine.

    python bench/bench_agreement.py [--quick] [--keep] [--keep-db]

--keep-db reuses the database a previous `--keep` run left (if it holds the same number
of rankings) instead of loading it again, and keeps it.
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
SERVER = os.environ.get("RLHF_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
DB_NAME = "rlhf_bench_agreement"
URL = f"{SERVER}/{DB_NAME}"
os.environ["RLHF_DATABASE_URL"] = URL
os.environ.setdefault("RLHF_SECRET_KEY", "bench-secret-key-not-for-production")

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

TARGET_S = 5.0
START = datetime(2024, 1, 1, tzinfo=UTC)


def recreate_database() -> None:
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    admin.dispose()


def drop_database() -> None:
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    admin.dispose()


def _copy(cur, table: str, cols: str, rows) -> None:  # type: ignore[no-untyped-def]
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def generate(n_rankings: int, n_labelers: int, overlap: int, seed: int = 0) -> dict:
    """Tasks with true orderings; each labeler ranks with personal noise (some tie)."""
    rng = np.random.default_rng(seed)
    n_tasks = n_rankings // overlap
    k = rng.integers(4, 10, n_tasks)
    sigma = rng.uniform(0.8, 3.0, n_labelers)  # per-labeler noise: agreement ~ 60–85%
    labelers = np.array([rng.choice(n_labelers, overlap, replace=False) for _ in range(n_tasks)])
    day = rng.integers(0, 84, n_tasks)
    return {"n_tasks": n_tasks, "k": k, "sigma": sigma, "labelers": labelers, "day": day,
            "gold": rng.random(n_tasks) < 0.02, "rng": rng}


def load(engine, g: dict, n_labelers: int) -> int:  # type: ignore[no-untyped-def]
    """COPY users, prompts, candidates, tasks, assignments, rankings, ratings."""
    rng = g["rng"]
    raw = engine.raw_connection()
    cur = raw.cursor()
    now = START
    _copy(cur, "users", "id, email, name, role, password_hash, active, held_out, created_at",
          ((u + 1, f"labeler{u}@bench", f"Labeler {u}", "labeler", "x", True, u % 6 == 0, now)
           for u in range(n_labelers)))
    n_tasks, ks = g["n_tasks"], g["k"]
    cand_start = np.concatenate([[0], np.cumsum(ks)])[:-1] + 1
    _copy(cur, "prompts", "id, text, text_hash, source, split, metadata, pii_counts, created_at",
          ((t + 1, f"prompt {t}", f"h{t}", "imported", "train", "{}", "{}", now)
           for t in range(n_tasks)))
    _copy(cur, "candidates", "id, prompt_id, text, sampling_params, created_at",
          ((int(cand_start[t]) + i, t + 1, f"output {i}", "{}", now)
           for t in range(n_tasks) for i in range(int(ks[t]))))
    tasks, assignments, rankings, ratings = [], [], [], []
    rid = 0
    for t in range(n_tasks):
        k = int(ks[t])
        ids = list(range(int(cand_start[t]), int(cand_start[t]) + k))
        gold = [[c] for c in ids] if g["gold"][t] else None
        tasks.append((t + 1, "rank", t + 1, json.dumps(ids), 3, 3, 0, bool(g["gold"][t]),
                      json.dumps(gold) if gold else None, "{}", "closed", now))
        for u in g["labelers"][t]:
            rid += 1
            at = START + timedelta(days=int(g["day"][t]), seconds=int(rng.integers(0, 86400)))
            score = -np.arange(k) + rng.normal(0, g["sigma"][u], k)
            order = [ids[i] for i in np.argsort(-score)]
            groups = [[c] for c in order]
            if rng.random() < 0.1:  # a tie now and then
                groups[0:2] = [groups[0] + groups[1]]
            shown = list(rng.permutation(ids).tolist())
            secs = int(rng.integers(20, 240))
            assignments.append((rid, t + 1, int(u) + 1, "submitted", json.dumps(shown), at,
                                at + timedelta(hours=1), at))
            rankings.append((rid, t + 1, rid, int(u) + 1, t + 1, json.dumps(groups),
                             json.dumps(shown), secs, f"k{rid}", at))
            for c in ids:
                flags = '["hallucination"]' if rng.random() < 0.05 else "[]"
                ratings.append((t + 1, rid, rid, int(u) + 1, c, int(rng.integers(1, 8)), flags,
                                "", 0, at))
    _copy(cur, "tasks", "id, kind, prompt_id, candidate_ids, required_labels, done_labels, "
          "priority, gold, gold_answer, params, state, created_at", tasks)
    _copy(cur, "assignments", "id, task_id, user_id, state, display_order, leased_at, "
          "expires_at, finished_at", assignments)
    _copy(cur, "rankings", "id, task_id, assignment_id, user_id, prompt_id, groups, "
          "display_order, seconds_spent, idempotency_key, created_at", rankings)
    _copy(cur, "ratings", "task_id, assignment_id, ranking_id, user_id, candidate_id, likert, "
          "flags, comment, seconds_spent, created_at", ratings)
    raw.commit()
    cur.execute("ANALYZE")
    raw.commit()
    raw.close()
    return len(ratings)


def _backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a local PostgreSQL backend (NaN if not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(label: str, fn, backend: int) -> float:  # type: ignore[no-untyped-def]
    s0, c0, t0 = _backend_cpu_s(backend), time.process_time(), time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    cpu, server = time.process_time() - c0, _backend_cpu_s(backend) - s0
    print(f"  {label:<44} {dt:7.3f} s   (CPU: python {cpu:.2f} s, postgres {server:.2f} s)")
    return dt


def existing_rankings() -> int | None:
    """Rankings in a bench database left by an earlier run, or None if there is none."""
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                              {"n": DB_NAME}).first()
    admin.dispose()
    if not exists:
        return None
    engine = create_engine(URL)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM rankings")).scalar_one())
    except Exception:  # noqa: BLE001 - not a usable bench database: rebuild it
        return None
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k rankings instead of 100k")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--keep-db", action="store_true",
                        help="reuse a kept benchmark database of the same size, and keep it")
    args = parser.parse_args()
    n_rankings = 10_000 if args.quick else 100_000
    n_labelers, overlap = 60, 3

    from alembic import command

    import app.models  # noqa: F401 - every table, so foreign keys resolve
    from app.agreement import loading, service
    from app.db import alembic_config, make_engine

    reuse = args.keep_db and existing_rankings() == n_rankings // overlap * overlap
    try:
        if reuse:
            engine = make_engine(URL)
            print(f"reusing {DB_NAME} ({n_rankings:,} rankings)")
        else:
            recreate_database()
            command.upgrade(alembic_config(URL), "heads")
            engine = make_engine(URL)
            t0 = time.perf_counter()
            n_ratings = load(engine, generate(n_rankings, n_labelers, overlap), n_labelers)
            print(f"loaded {n_rankings:,} rankings (K 4..9, {n_labelers} labelers, overlap "
                  f"{overlap}), {n_ratings:,} ratings in {time.perf_counter() - t0:.1f} s")
        with Session(engine) as db:
            backend = db.execute(text("SELECT pg_backend_pid()")).scalar_one()
            f = service.make_filters()
            service.clear_cache()
            timed("load rankings only", lambda: loading.load_rankings(db, f), backend)
            service.clear_cache()
            cold = timed("page, cold (empty cache)", lambda: service.page(db=db, filters=f),
                         backend)
            warm = timed("page, warm (cached)", lambda: service.page(db=db, filters=f), backend)
            held = service.make_filters(group="held_out")
            timed("page, cold, held-out labelers only", lambda: service.page(db=db, filters=held),
                  backend)
            s = service.summary(db=db, filters=f)
        print(f"pooled agreement {s['pairwise_agreement']:.3f} "
              f"CI [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] over {s['n_comparisons']:,} pairs")
        verdict = "OK" if cold < TARGET_S else "SLOW"
        print(f"cold {cold:.2f} s vs target {TARGET_S:.0f} s: {verdict}; "
              f"warm is {cold / max(warm, 1e-9):.0f}× faster than cold")
        engine.dispose()
    finally:
        if not (args.keep or args.keep_db):
            drop_database()


if __name__ == "__main__":
    main()
