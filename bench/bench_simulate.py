"""Load test: 200 simulated labelers against a real deployment for 60 s, then invariants in SQL.

    python bench/bench_simulate.py [--labelers 200] [--seconds 60] [--think 0] [--workers 2]
                                   [--quick]

It creates a fresh PostgreSQL database, migrates it, seeds work of every kind (rank tasks of
4 to 7 outputs with overlap 3, rate tasks with overlap 2, demonstrate and write-prompt
tasks), starts uvicorn in subprocesses, and runs the product's own command

    rlhf-studio simulate --url URL --labelers N --seconds S --think T --receipts --report R

beside the database (its accounts are made through the auth service). Then it checks, in SQL:

- 0 over-collected tasks: no task has more submitted assignments, stored submissions or
  done_labels than its overlap;
- 0 duplicate (task, user): nobody's work is stored twice for one task, in any table;
- 0 lost submissions: every submission the client saw a 2xx for is stored, for that task
  and that user;
- 0 5xx, no submit left unanswered after its retries (a submit that meets a closed
  connection is sent again with its idempotency key), and every replayed key got the
  original answer;

and prints the figures (submissions/s, latency percentiles, errors, agreement). It exits 1
when an invariant fails. `--quick` is 50 labelers for 15 s.
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DB_NAME = "rlhf_bench_simulate"
URL = PG + DB_NAME
DATA = Path(tempfile.mkdtemp(prefix="rlhf-bench-simulate-"))
ENV = dict(os.environ, RLHF_DATABASE_URL=URL, RLHF_ENV="development", RLHF_DATA_DIR=str(DATA),
           RLHF_SECRET_KEY="bench-secret-not-for-production")
os.environ.update(ENV)
sys.path.insert(0, str(REPO))

# Submission tables: (table, the filter that keeps a kind's own rows).
TABLES = {
    "demonstrate": ("demonstrations", "TRUE"),
    "rank": ("rankings", "TRUE"),
    "rate": ("ratings", "ranking_id IS NULL"),
    "write_prompt": ("written_prompts", "TRUE"),
}


def _admin(sql: str) -> None:
    eng = create_engine(PG + "postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(sql))
    eng.dispose()


def _seed(rank: int, rate: int, demonstrate: int, write_prompt: int) -> None:
    """Migrate and load the work, in bulk SQL (the queue's own creation is tested elsewhere)."""
    from alembic import command

    from app.db import alembic_config

    command.upgrade(alembic_config(URL), "head")
    eng = create_engine(URL)
    n_prompts = rank + rate + demonstrate
    with eng.begin() as conn:
        conn.execute(text("""
            INSERT INTO prompts (text, text_hash, source, split, metadata, pii_counts, created_at)
            SELECT 'Describe the ' || (ARRAY['lighthouse','garden','river','robot'])[1 + g % 4]
                   || ' number ' || g || ' in a few words.',
                   md5(g::text), 'imported', 'train', '{}', '{}', now()
            FROM generate_series(1, :n) g"""), {"n": n_prompts})
        # 4..7 outputs per rank prompt, one per rate prompt; the texts vary in their e's.
        conn.execute(text("""
            INSERT INTO candidates (prompt_id, text, model, sampling_params, created_at)
            SELECT p.id, 'the ' || repeat('e', (p.id * 7 + j * 3) % 9) || ' answer ' || j
                   || ' to ' || p.id, 'bench', '{}'::json, now()
            FROM prompts p, generate_series(1, 4 + p.id % 4) j WHERE p.id <= :rank
            UNION ALL
            SELECT p.id, 'one ' || repeat('e', p.id % 7) || ' output', 'bench', '{}'::json, now()
            FROM prompts p WHERE p.id > :rank AND p.id <= :rank + :rate"""),
            {"rank": rank, "rate": rate})
        conn.execute(text("""
            INSERT INTO tasks (kind, prompt_id, candidate_ids, required_labels, done_labels,
                               leased_labels, priority, gold, params, state, created_at)
            SELECT 'rank', c.prompt_id, to_json(array_agg(c.id ORDER BY c.id)), 3, 0, 0, 0, false,
                   '{}'::json, 'open', now()
            FROM candidates c WHERE c.prompt_id <= :rank GROUP BY c.prompt_id
            UNION ALL
            SELECT 'rate', c.prompt_id, to_json(ARRAY[c.id]), 2, 0, 0, 0, false, '{}'::json,
                   'open', now()
            FROM candidates c WHERE c.prompt_id > :rank
            UNION ALL
            SELECT 'demonstrate', p.id, '[]'::json, 1, 0, 0, 0, false, '{}'::json, 'open', now()
            FROM prompts p WHERE p.id > :rank + :rate
            UNION ALL
            SELECT 'write_prompt', NULL, '[]'::json, 1, 0, 0, 0, false,
                   '{"prompt_kind": "plain"}'::json, 'open', now()
            FROM generate_series(1, :wp)"""), {"rank": rank, "rate": rate, "wp": write_prompt})
        conn.execute(text("ANALYZE"))
    eng.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(port: int, workers: int, keep_alive: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level",
         "warning", "--no-access-log", "--timeout-keep-alive", str(keep_alive)],
        cwd=REPO, env=ENV, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server did not start; see {log}")


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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _scalar(conn, sql: str, **params: object) -> int:  # type: ignore[no-untyped-def]
    return int(conn.execute(text(sql), params).scalar() or 0)


def _invariants(report: dict) -> dict[str, int]:  # type: ignore[type-arg]
    """Each invariant's count of violations (all must be 0)."""
    eng = create_engine(URL)
    out: dict[str, int] = {}
    with eng.connect() as conn:
        stored = " UNION ALL ".join(
            f"SELECT task_id, user_id FROM {table} WHERE {where}"
            for table, where in TABLES.values())
        out["over-collected tasks"] = _scalar(conn, f"""
            SELECT count(*) FROM tasks t
            LEFT JOIN (SELECT task_id, count(*) n FROM assignments WHERE state = 'submitted'
                       GROUP BY task_id) a ON a.task_id = t.id
            LEFT JOIN (SELECT task_id, count(*) n FROM ({stored}) s GROUP BY task_id) s
                   ON s.task_id = t.id
            WHERE t.done_labels > t.required_labels OR coalesce(a.n, 0) > t.required_labels
               OR coalesce(s.n, 0) > t.required_labels OR coalesce(s.n, 0) <> t.done_labels""")
        out["duplicate (task, user)"] = _scalar(conn, f"""
            SELECT count(*) FROM (SELECT task_id, user_id FROM ({stored}) s
                                  GROUP BY task_id, user_id HAVING count(*) > 1) d""") \
            + _scalar(conn, """SELECT count(*) FROM (SELECT task_id, user_id FROM assignments
                               GROUP BY task_id, user_id HAVING count(*) > 1) d""")
        lost = 0
        for r in report.get("receipts", []):
            table, _ = TABLES[r["kind"]]
            lost += _scalar(conn, f"""
                SELECT count(*) = 0 FROM {table} x JOIN users u ON u.id = x.user_id
                WHERE x.id = :id AND x.task_id = :task AND u.email = :email""",
                            id=r["id"], task=r["task_id"], email=r["user_email"])
        out["lost submissions"] = lost
        out["stored beyond receipts"] = _scalar(conn, f"""
            SELECT count(*) FROM ({stored}) s""") - len(report.get("receipts", []))
    eng.dispose()
    out["5xx responses"] = report["server_errors"]
    out["submits abandoned after retries"] = report["abandoned_submits"]
    out["replays with another answer"] = report["idempotent_replays"]["mismatched"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labelers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--keep-alive", type=int, default=5,
                        help="uvicorn's --timeout-keep-alive (its default: 5 s)")
    parser.add_argument("--quick", action="store_true", help="50 labelers for 15 s")
    args = parser.parse_args()
    if args.quick:
        args.labelers, args.seconds = 50, 15.0
    _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{DB_NAME}"')
    proc = None
    try:
        t0 = time.perf_counter()
        _seed(rank=4000, rate=2000, demonstrate=1000, write_prompt=300)
        print(f"seeded 7,300 tasks (rank K=4..7 overlap 3, rate overlap 2, demonstrate, "
              f"write-prompt) in {time.perf_counter() - t0:.1f} s")
        port, log = _free_port(), DATA / "server.log"
        proc = _serve(port, args.workers, args.keep_alive, log)
        report_path = DATA / "report.json"
        cmd = [sys.executable, "-c", "from app.cli import main; main()", "simulate",
               "--url", f"http://127.0.0.1:{port}", "--labelers", str(args.labelers),
               "--seconds", str(args.seconds), "--think", str(args.think), "--receipts",
               "--kinds", "rank,rate,demonstrate,write_prompt",
               "--report", str(report_path), "--quiet"]
        print("$ rlhf-studio " + " ".join(cmd[3:]))
        t0, cpu0 = time.perf_counter(), (_server_cpu(proc.pid), _children_cpu())
        subprocess.run(cmd, cwd=REPO, env=ENV, check=True)
        cpu = (_server_cpu(proc.pid) - cpu0[0], _children_cpu() - cpu0[1])
        print(f"(the command took {time.perf_counter() - t0:.1f} s with account setup)")
        report = json.loads(report_path.read_text())
        n = max(1, report["submitted"]["total"] + report["skipped"])
        print(f"  CPU per lease + submit (or skip): server {cpu[0] * 1000 / n:.1f} ms, "
              f"simulated labelers {cpu[1] * 1000 / n:.1f} ms (the client's includes its "
              f"start and account setup); load average {os.getloadavg()[0]:.1f}")
        failed = _print(report, _invariants(report), args)
        if report["server_errors"]:
            print("server log tail:\n" + log.read_text()[-3000:])
        sys.exit(1 if failed else 0)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def _print(report: dict, checks: dict[str, int], args: argparse.Namespace) -> bool:  # type: ignore[type-arg]
    sub, agr = report["submitted"], report["agreement"]
    print(f"== {args.labelers} simulated labelers, {args.seconds:g} s, think {args.think:g} s, "
          f"uvicorn --workers {args.workers}")
    print(f"  submitted {sub['total']} ({report['submits_per_s']}/s) {sub['by_kind']}; "
          f"skipped {report['skipped']}; replays {report['idempotent_replays']['sent']}; "
          f"errors {report['errors'] or 'none'}")
    for op, pct in report["latency_ms"].items():
        if pct.get("n"):
            print(f"  {op:<9} p50 {pct['p50']:7.1f} ms  p90 {pct['p90']:7.1f} ms  "
                  f"p99 {pct['p99']:7.1f} ms  max {pct['max']:7.1f} ms  (n {pct['n']})")
    if agr["pairwise"] is not None:
        print(f"  agreement {agr['pairwise']:.3f} over {agr['n_comparisons']} comparisons "
              f"(expected {agr['expected']:.3f})")
    resets = sum(n for k, n in report["errors"].items() if k.endswith("connection"))
    print(f"  connections closed under a request: {resets} (a keep-alive connection the "
          f"server closed as the client reused it; each submit was sent again with its "
          f"key: {report['retried_submits']} retries)")
    failed = False
    for name, n in checks.items():
        ok = n == 0 or name == "stored beyond receipts"
        failed |= not ok
        print(f"  {'OK  ' if ok else 'FAIL'} {name}: {n}")
    return failed


if __name__ == "__main__":
    main()
