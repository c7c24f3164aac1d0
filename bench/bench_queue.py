"""Lease + submit through the HTTP API with 32 concurrent clients, at 10k and 1M open tasks.

    python bench/bench_queue.py [--quick] [--seconds 15] [--clients 32]

For each size it loads the tasks (INSERT … SELECT generate_series, then ANALYZE), starts
uvicorn in a subprocess on a database of its own, and times lease (GET /api/v1/tasks/next)
+ submit (POST /api/v1/tasks/{id}/submit) cycles from 32 concurrent HTTP clients, each
its own keep-alive connection (bench/loadgen.py: a lean client, so the load generator does
not take the CPU the server needs). In the same run it times the same SQL transactions
(app/queue/sql.py) directly through psycopg from 32 threads, so the API's overhead shows
as a ratio. It prints cycles/s, p50 and p99
latency per cycle, the CPU per cycle of the server (uvicorn's processes, from /proc) and
of the client, the large/small latency ratio, and the pick query's plan at each size.
`--quick` uses 10k and 100k tasks.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DB_NAME = os.environ.get("RLHF_BENCH_QUEUE_DB", "rlhf_bench_queue")  # one per concurrent run
URL = SERVER + DB_NAME
os.environ["RLHF_DATABASE_URL"] = URL
os.environ.setdefault("RLHF_DATA_DIR", tempfile.mkdtemp(prefix="rlhf-bench-"))
os.environ.setdefault("RLHF_SECRET_KEY", "bench-secret-not-for-production")

import httpx  # noqa: E402
import loadgen  # noqa: E402
import psycopg  # noqa: E402

from app.queue import sql  # noqa: E402

OVERLAP = 3
TARGET_P99_MS = 50.0
ERRORS: list[str] = []
N_PROMPTS = 1000


def _pg(dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}",
                           autocommit=True)


def reset_database() -> None:
    """A fresh, migrated bench database."""
    from alembic import command

    from app.db import alembic_config

    with _pg() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    command.upgrade(alembic_config(URL), "heads")


def drop_database() -> None:
    with _pg() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def make_users(n: int) -> list[tuple[int, str]]:
    """n labelers with API tokens: (user id, bearer token)."""
    from app.auth import service as auth
    from app.auth.models import Role
    from app.db import session_scope

    out = []
    with session_scope() as db:
        for i in range(n):
            user = auth.create_user(db=db, email=f"bench{i}@example.com",
                                    password="bench password 123", role=Role.labeler)
            _, token = auth.create_token(db=db, user=user, name="bench")
            out.append((user.id, token))
    return out


def load_tasks(n: int) -> float:
    """Replace all tasks with n open demonstrate tasks; returns seconds taken."""
    start = time.perf_counter()
    with _pg(DB_NAME) as conn:
        conn.execute("TRUNCATE demonstrations, assignments, tasks RESTART IDENTITY CASCADE")
        if not conn.execute("SELECT 1 FROM prompts LIMIT 1").fetchone():
            conn.execute(
                "INSERT INTO prompts (text, text_hash, source, split, metadata, pii_counts,"
                " created_at) SELECT 'Bench prompt ' || g, md5(g::text), 'imported', 'train',"
                " '{}', '{}', now() FROM generate_series(1, %s) g", (N_PROMPTS,))
        conn.execute(
            "INSERT INTO tasks (kind, prompt_id, candidate_ids, required_labels, done_labels,"
            " leased_labels, priority, gold, params, state, created_at)"
            " SELECT 'demonstrate', 1 + g %% %s, '[]', %s, 0, 0, 0, false, '{}', 'open', now()"
            " FROM generate_series(1, %s) g", (N_PROMPTS, OVERLAP, n))
        conn.execute("VACUUM ANALYZE tasks")
        conn.execute("ANALYZE")
    return time.perf_counter() - start


def explain_pick(user_id: int) -> str:
    query = sql.pick_sql(dialect="postgresql", with_kind=True)
    query = query.replace(":kind", "'demonstrate'").replace(":user_id", str(user_id))
    with _pg(DB_NAME) as conn:
        # The first scan after a burst visits (and marks dead) the index entries of tasks
        # that just closed; the second shows the steady state the labelers see.
        first = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + query)
        touched = [r[0] for r in first if "Buffers" in r[0]][:1]
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + query)
        return f"(first scan after the run: {touched})\n" + "\n".join(r[0] for r in rows)


def hot_share() -> float:
    """Share of task updates PostgreSQL did as HOT updates (no new index entries)."""
    with _pg(DB_NAME) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        upd, hot = conn.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                                " WHERE relname = 'tasks'").fetchone()
    return hot / upd if upd else 0.0


# --- CPU accounting -------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process tree, from /proc/PID/stat."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def own_cpu() -> float:
    """CPU seconds used so far by this (client) process, all threads."""
    t = os.times()
    return t.user + t.system


# --- through the API ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workers: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, RLHF_DB_POOL_SIZE="20", RLHF_ENV="development")
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level",
         "warning", "--no-access-log", "--timeout-worker-healthcheck", "120"],
        cwd=ROOT, env=env)


def wait_ready(base: str, token: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"},
                         timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start")


# Each timed cycle is recorded as (lease seconds, submit seconds).
Cycle = tuple[float, float]


async def _api_client(conn: loadgen.Connection, stop: float, lat: list[Cycle]) -> None:
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        try:
            resp = await conn.request("GET", "/api/v1/tasks/next",
                                      params={"kind": "demonstrate"})
            if resp.status == 204:
                return
            resp.raise_for_status()
            lease = resp.json()
            t1 = time.perf_counter()
            body = {"assignment_id": lease["assignment_id"], "seconds_spent": 30,
                    "idempotency_key": uuid.uuid4().hex,
                    "text": "A demonstration written for the benchmark."}
            done = await conn.request("POST", f"/api/v1/tasks/{lease['task_id']}/submit",
                                      json_body=body)
            done.raise_for_status()
        except (loadgen.HTTPError, OSError) as exc:
            ERRORS.append(f"{type(exc).__name__}: {exc}")
            continue
        lat.append((t1 - t0, time.perf_counter() - t1))


async def _api_run(base: str, tokens: list[str], seconds: float,
                   server_pid: int) -> tuple[list[Cycle], dict[str, float]]:
    """Latencies of the timed cycles, and the CPU seconds server and client spent on them."""
    lat: list[Cycle] = []
    conns = [loadgen.Connection(base, {"Authorization": f"Bearer {t}"}) for t in tokens]
    try:
        warm = time.perf_counter() + 2  # fill pools, prepare statements
        await asyncio.gather(*(_api_client(c, warm, []) for c in conns))
        cpu0 = process_cpu(server_pid), own_cpu()
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(_api_client(c, stop, lat) for c in conns))
        cpu = {"server": process_cpu(server_pid) - cpu0[0], "client": own_cpu() - cpu0[1]}
    finally:
        for c in conns:
            c.close()
    return lat, cpu


# --- directly through psycopg ---------------------------------------------------------


PICK = sql.pick("postgresql", True).pyformat
DEMO = ("INSERT INTO demonstrations (task_id, assignment_id, user_id, prompt_id, text,"
        " seconds_spent, idempotency_key, created_at) VALUES (%(task_id)s, %(assignment_id)s,"
        " %(user_id)s, %(prompt_id)s, %(text)s, 30, %(key)s, %(now)s)")


def _direct_cycle(conn: psycopg.Connection, user_id: int) -> Cycle | None:
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    with conn.transaction():
        conn.execute(sql.EXPIRED.pyformat, {"now": now, "limit": 20}).fetchall()
        conn.execute(sql.LIVE_LEASE_OF_KIND.pyformat,
                     {"user_id": user_id, "now": now, "kind": "demonstrate"}).fetchone()
        row = conn.execute(PICK, {"user_id": user_id, "kind": "demonstrate"}).fetchone()
        if row is None:
            return None
        task_id, prompt_id = row[0], row[2]
        conn.execute(sql.CLAIM.pyformat, {"task_id": task_id})
        assignment_id = conn.execute(sql.INSERT_ASSIGNMENT.pyformat, {
            "task_id": task_id, "user_id": user_id, "display_order": "[]", "now": now,
            "expires_at": now + timedelta(minutes=30)}).fetchone()[0]
    t1 = time.perf_counter()
    now = datetime.now(UTC)
    with conn.transaction():
        conn.execute(sql.LOCK_TASK.pyformat, {"task_id": task_id})
        conn.execute(sql.LOCK_ASSIGNMENT.pyformat, {"assignment_id": assignment_id}).fetchone()
        conn.execute(DEMO, {"task_id": task_id, "assignment_id": assignment_id,
                            "user_id": user_id, "prompt_id": prompt_id, "key": uuid.uuid4().hex,
                            "text": "A demonstration written for the benchmark.", "now": now})
        conn.execute(sql.SUBMIT_ASSIGNMENT.pyformat, {"assignment_id": assignment_id, "now": now})
        conn.execute(sql.COUNT_SUBMISSION.pyformat, {"task_id": task_id, "now": now})
    return t1 - t0, time.perf_counter() - t1


def _direct_worker(user_id: int, warm: float, stop: float, lat: list[Cycle]) -> None:
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={DB_NAME}") as conn:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            cycle = _direct_cycle(conn, user_id)
            if cycle is None:
                return
            if t0 > warm:
                lat.append(cycle)


def direct_run(user_ids: list[int], seconds: float) -> tuple[list[Cycle], dict[str, float]]:
    """Latencies of the timed cycles, and the CPU seconds the client threads spent in all."""
    lat: list[Cycle] = []
    warm = time.perf_counter() + 2
    stop = warm + seconds
    threads = [threading.Thread(target=_direct_worker, args=(u, warm, stop, lat))
               for u in user_ids]
    cpu0 = own_cpu()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, {"client": own_cpu() - cpu0}


# --- report ---------------------------------------------------------------------------


def _p(ms: list[float], q: float) -> float:
    return ms[min(len(ms) - 1, int(len(ms) * q))]


def summary(run: tuple[list[Cycle], dict[str, float]], seconds: float) -> dict[str, float]:
    lat, cpu = run
    if not lat:
        return {"cycles_s": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan")}
    ms = sorted((a + b) * 1000 for a, b in lat)
    out = {"cycles_s": len(ms) / seconds, "p50_ms": statistics.median(ms), "p99_ms": _p(ms, 0.99)}
    # Each transaction on its own (the lease, the submit): the latency a request sees.
    for i, name in enumerate(("lease", "submit")):
        one = sorted(c[i] * 1000 for c in lat)
        out.update({f"{name}_p50_ms": statistics.median(one), f"{name}_p99_ms": _p(one, 0.99)})
    # CPU per timed cycle (the direct run's client CPU includes its 2 s warm-up).
    out.update({f"{k}_cpu_ms": v * 1000 / len(ms) for k, v in cpu.items()})
    return out


def line(label: str, s: dict[str, float]) -> str:
    cpu = "".join(f"   {k.removesuffix('_cpu_ms')} CPU {v:5.2f} ms/cycle"
                  for k, v in s.items() if k.endswith("_cpu_ms"))
    tx = "".join(f"\n          {name:<6} p50 {s[name + '_p50_ms']:6.1f} ms   p99"
                 f" {s[name + '_p99_ms']:6.1f} ms" for name in ("lease", "submit")
                 if name + "_p50_ms" in s)
    return (f"  {label:<7} {s['cycles_s']:8.1f} cycles/s ({2 * s['cycles_s']:7.1f} tx/s)"
            f"   cycle p50 {s['p50_ms']:6.1f} ms   p99 {s['p99_ms']:6.1f} ms{cpu}{tx}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k tasks")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=32)
    # The supervisor's health-ping timeout is raised: on a saturated 2-core machine a busy
    # worker misses the default 5 s and gets killed mid-request.
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 1_000_000]
    reset_database()
    users = make_users(args.clients)
    port = free_port()
    server = start_server(port, args.workers)
    results: dict[int, dict[str, dict[str, float]]] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, users[0][1])
        for n in sizes:
            took = load_tasks(n)
            print(f"== {n:,} open tasks (overlap {OVERLAP}), loaded in {took:.1f} s;"
                  f" {args.clients} clients, {args.seconds:.0f} s each")
            api = summary(loadgen.run(_api_run(base, [t for _, t in users], args.seconds,
                                               server.pid)), args.seconds)
            direct = summary(direct_run([u for u, _ in users], args.seconds), args.seconds)
            results[n] = {"api": api, "direct": direct}
            print(line("API", api))
            print(line("direct", direct))
            print(f"  API / direct rate: {api['cycles_s'] / max(direct['cycles_s'], 1e-9):.2f}")
            # Little's law: clients that never pause each wait clients / throughput on
            # average, so a latency target implies a throughput floor.
            # A p99 under the target needs at least a mean under it.
            floor = args.clients / (TARGET_P99_MS / 1000)
            print(f"  {args.clients} back-to-back clients wait {args.clients} / rate on average:"
                  f" API {1000 * args.clients / max(api['cycles_s'], 1e-9):.0f} ms, direct"
                  f" {1000 * args.clients / max(direct['cycles_s'], 1e-9):.0f} ms per cycle;"
                  f" a p99 under {TARGET_P99_MS:.0f} ms needs over {floor:.0f} cycles/s per"
                  f" cycle, over {floor:.0f} tx/s ({floor / 2:.0f} cycles/s) per transaction")
            if ERRORS:
                print(f"  API errors: {len(ERRORS)} (first: {ERRORS[0]})")
                ERRORS.clear()
            print(f"  HOT updates of tasks: {hot_share():.0%}")
            print("  pick plan:\n    " + explain_pick(users[0][0]).replace("\n", "\n    "))
    finally:
        server.terminate()
        server.wait(timeout=20)
        drop_database()
    small, large = sizes
    for kind in ("api", "direct"):
        ratio = results[large][kind]["p50_ms"] / results[small][kind]["p50_ms"]
        ratio99 = results[large][kind]["p99_ms"] / results[small][kind]["p99_ms"]
        print(f"{kind}: {large:,}/{small:,} latency ratio p50 {ratio:.2f}, p99 {ratio99:.2f}")
    print(json.dumps({str(k): v for k, v in results.items()}))


if __name__ == "__main__":
    main()
