"""Time to first byte of the rank page and of a rank submit under 32 concurrent labelers.

Each simulated labeler loops: lease the next rank task (GET /api/v1/tasks/next, not timed
here: bench_queue.py measures it), open its page (GET /label/a/{id}, timed) and submit a
ranking with 5 Likert ratings (POST /api/v1/tasks/{id}/submit, timed). The app runs in
uvicorn subprocesses on a fresh PostgreSQL database, dropped afterwards.

    .venv/bin/python bench/bench_labeling.py [--quick] [--labelers 32] [--workers 2] [--think S]

By default it runs two phases on the same server:

- "at work": each labeler waits a random 0..4 s (mean 2 s) before opening the page and
  again before submitting, so one K=5 ranking takes about 4 s. People take a minute or
  more per ranking (PAPER.md), so this is 32 labelers working about 15 times faster than
  people do. The p99 target applies to this phase.
- "stress": every labeler fires its next request the moment the last one answers. It
  shows the capacity (cycles/s, CPU per cycle); its latency mostly measures queueing for
  the CPU behind 31 other requests.

--think S runs one phase with mean think time S instead.

Target: p99 under 100 ms for both the page and the submit, with 32 labelers at work.
"""

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DB_NAME = "rlhf_bench_labeling"
URL = PG + DB_NAME
K = 5
TARGET_MS = 100.0
AT_WORK_THINK_S = 2.0

os.environ.update(RLHF_DATABASE_URL=URL, RLHF_ENV="development",
                  RLHF_DATA_DIR=tempfile.mkdtemp(prefix="rlhf-bench-labeling-"))
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import loadgen  # noqa: E402
from sqlalchemy import create_engine, insert, text  # noqa: E402


def _recreate_database() -> None:
    admin = create_engine(PG + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    admin.dispose()


def _drop_database() -> None:
    admin = create_engine(PG + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    admin.dispose()


def _seed(labelers: int, per_labeler: int, backlog: int) -> list[str]:
    """Users with tokens and open K-candidate rank tasks (plus a backlog); returns tokens."""
    from alembic import command

    from app.auth import service as auth
    from app.auth.models import Role
    from app.db import alembic_config, session_scope
    from app.prompts.models import Candidate, Prompt
    from app.queue.models import Task

    command.upgrade(alembic_config(URL), "heads")
    tokens = []
    with session_scope() as db:
        for n in range(labelers):
            user = auth.create_user(db=db, email=f"bench{n}@example.com",
                                    password="bench-password", role=Role.labeler)
            tokens.append(auth.create_token(db=db, user=user, name="bench")[1])
        n_tasks = labelers * per_labeler + backlog
        prompts = db.execute(insert(Prompt).returning(Prompt.id), [
            {"text": f"Bench prompt {i}: " + "context " * 40, "text_hash": f"{i:064x}",
             "source": "imported", "split": "train", "meta": {}, "pii_counts": {}}
            for i in range(n_tasks)
        ]).scalars().all()
        cands = db.execute(insert(Candidate).returning(Candidate.id, Candidate.prompt_id), [
            {"prompt_id": pid, "text": f"Candidate {j} for prompt {pid}. " + "words " * 80,
             "model": "bench", "sampling_params": {}}
            for pid in prompts for j in range(K)
        ]).all()
        by_prompt: dict[int, list[int]] = {}
        for cid, pid in cands:
            by_prompt.setdefault(pid, []).append(cid)
        db.execute(insert(Task), [
            {"kind": "rank", "prompt_id": pid, "candidate_ids": by_prompt[pid],
             "required_labels": 1, "done_labels": 0, "priority": 0, "gold": False,
             "params": {}, "state": "open"}
            for pid in prompts
        ])
    return tokens


def _serve(port: int, workers: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
         "--no-access-log"],
        cwd=REPO, env=dict(os.environ),
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


async def _ttfb(conn: loadgen.Connection, method: str, url: str,
                **kw: object) -> tuple[float, loadgen.Response]:
    start = time.perf_counter()
    first: list[float] = []
    # The status line and headers are in: the first byte has arrived.
    resp = await conn.request(method, url, on_headers=lambda: first.append(time.perf_counter()),
                              **kw)  # type: ignore[arg-type]
    return first[0] - start, resp


async def _labeler(base: str, token: str, rounds: int, page: list[float],
                   submit: list[float], errors: list[str], start: int = 0,
                   think: float = 0.0) -> None:
    conn = loadgen.Connection(base, {"Authorization": f"Bearer {token}"})
    try:
        for n in range(rounds):
            nxt = await conn.request("GET", "/api/v1/tasks/next", params={"kind": "rank"})
            if nxt.status != 200:
                errors.append(f"next: {nxt.status}")
                return
            task = nxt.json()
            await asyncio.sleep(random.uniform(0, 2 * think))
            seconds, resp = await _ttfb(conn, "GET", f"/label/a/{task['assignment_id']}")
            if resp.status != 200:
                errors.append(f"page: {resp.status}")
            page.append(seconds)
            ids = [c["id"] for c in task["candidates"]]
            body = {"assignment_id": task["assignment_id"], "seconds_spent": 30,
                    "idempotency_key": f"bench-{token[-12:]}-{start + n}",
                    "ranking": [[ids[0]], [ids[1], ids[2]], [ids[3]], [ids[4]]],
                    "ratings": {str(c): {"likert": 4, "flags": []} for c in ids}}
            await asyncio.sleep(random.uniform(0, 2 * think))
            seconds, resp = await _ttfb(conn, "POST", f"/api/v1/tasks/{task['task_id']}/submit",
                                        json_body=body)
            if resp.status != 200:
                errors.append(f"submit: {resp.status}")
            submit.append(seconds)
    except (loadgen.HTTPError, OSError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


_TICK = os.sysconf("SC_CLK_TCK")


def _server_cpu(pid: int) -> float:
    """CPU seconds used so far by uvicorn's supervisor and its workers (/proc/PID/stat)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _phase(server_pid: int, base: str, tokens: list[str], rounds: int, label: str,
           think: float, start: int, args: argparse.Namespace, errors: list[str]) -> None:
    """One timed phase: prints its throughput, CPU per cycle and TTFB percentiles."""
    page: list[float] = []
    submit: list[float] = []

    async def timed() -> tuple[float, float, float]:
        cpu0, client0, t0 = _server_cpu(server_pid), _own_cpu(), time.perf_counter()
        await asyncio.gather(*[_labeler(base, t, rounds, page, submit, errors, start=start,
                                        think=think) for t in tokens])
        return time.perf_counter() - t0, _server_cpu(server_pid) - cpu0, _own_cpu() - client0

    wall, server_cpu, client_cpu = loadgen.run(timed())
    n = max(len(submit), 1)
    print(f"== {label}: {args.labelers} concurrent labelers × {rounds} rank tasks, uvicorn "
          f"--workers {args.workers}, mean think {think:g} s: {len(submit)} submits in "
          f"{wall:.1f} s ({len(submit) / wall:.0f} lease+page+submit cycles/s)")
    print(f"  CPU per lease+page+submit cycle: server {server_cpu * 1000 / n:.1f} ms, "
          f"client {client_cpu * 1000 / n:.1f} ms")
    for name, values in (("rank page", page), ("submit", submit)):
        p50, p99 = _pct(values, 0.50), _pct(values, 0.99)
        verdict = ("OK" if p99 < TARGET_MS else "ABOVE TARGET") if think > 0 else "(capacity)"
        print(f"  {name:<10} TTFB p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
              f"p99/target {p99 / TARGET_MS:4.2f}  {verdict}")


def main() -> None:
    """Seed, serve, run the labelers, print p50/p99, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--labelers", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--think", type=float, default=None,
                        help="run one phase with this mean wait (s) before each page and "
                             "submit, instead of 'at work' (2 s) then 'stress' (0 s)")
    args = parser.parse_args()
    phases = ([("at work", AT_WORK_THINK_S), ("stress", 0.0)] if args.think is None
              else [(f"think {args.think:g} s", args.think)])
    rounds = 6 if args.quick else 25
    backlog = 2_000 if args.quick else 20_000
    _recreate_database()
    proc = None
    try:
        t0 = time.perf_counter()
        per_labeler = len(phases) * rounds + 1
        tokens = _seed(args.labelers, per_labeler, backlog)
        print(f"seeded {args.labelers} labelers, {args.labelers * per_labeler + backlog:,} "
              f"rank tasks (K={K}) in {time.perf_counter() - t0:.1f} s")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = _serve(port, args.workers)
        base = f"http://127.0.0.1:{port}"
        errors: list[str] = []

        async def warm() -> None:
            await asyncio.gather(*[_labeler(base, t, 1, [], [], errors) for t in tokens])

        loadgen.run(warm())
        for i, (label, think) in enumerate(phases):
            _phase(proc.pid, base, tokens, rounds, label, think, 1 + i * rounds, args, errors)
        if errors:
            print(f"  errors: {len(errors)} (first: {errors[:3]})")
            sys.exit(1)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        _drop_database()


if __name__ == "__main__":
    main()
