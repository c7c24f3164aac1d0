"""Benchmark: export comparisons from PostgreSQL vs PostgreSQL's own COPY of the same rows.

Builds a bench database with generate_series (rankings of K = 4..9, every fifth with a tie
of its two best), then for 100k and 1M comparison rows (10k and 100k with --quick) runs,
each in a fresh subprocess so peak memory is its own:
  - the exporter (app.exports.service.build, JSONL, the snapshot's max_id picks the size),
  - `COPY (SELECT … the same pairs …) TO STDOUT` written to a file.
Prints seconds, rows/s, peak RSS, and the ratios the targets are about:
  exporter time ≤ 3 × COPY time;  peak RSS at the large size ≤ small size + 50 MB.

    .venv/bin/python bench/bench_exports.py [--quick] [--keep] [--keep-db]

--keep-db reuses a database an earlier `--keep` run left, if it is large enough, and
keeps it. Each child also reports its own CPU seconds (user + system), which stay
meaningful when other work shares the machine.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("RLHF_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
DB_NAME = "rlhf_bench_exports"
DB_URL = f"{SERVER}/{DB_NAME}"
AVG_PAIRS = 19.33 - 0.2  # mean C(K,2) over K=4..9, less one tied pair in every fifth ranking

COPY_SQL = """
COPY (
  WITH g AS (
    SELECT r.id AS ranking_id, r.prompt_id, r.user_id, gi.ord AS g, c.value::bigint AS cid
    FROM rankings r
    CROSS JOIN LATERAL json_array_elements(r.groups) WITH ORDINALITY AS gi(grp, ord)
    CROSS JOIN LATERAL json_array_elements_text(gi.grp) AS c(value)
    WHERE r.id <= {cutoff}
  )
  SELECT p.text, cw.text, cl.text, w.prompt_id, w.ranking_id, w.user_id
  FROM g w
  JOIN g l ON l.ranking_id = w.ranking_id AND l.g > w.g
  JOIN prompts p ON p.id = w.prompt_id
  JOIN candidates cw ON cw.id = w.cid
  JOIN candidates cl ON cl.id = l.cid
) TO STDOUT
"""


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_database(n_rankings: int) -> None:
    """Drop, create and migrate the bench database, then fill it with SQL."""
    import psycopg
    from alembic import command

    with psycopg.connect(_psycopg_url(f"{SERVER}/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    from app.db import alembic_config

    command.upgrade(alembic_config(DB_URL), "heads")
    with psycopg.connect(_psycopg_url(DB_URL)) as conn:
        for statement in _fill_sql(n_rankings):
            conn.execute(statement)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def _fill_sql(n: int) -> list[str]:
    return [
        """INSERT INTO users (email, name, role, password_hash, active, held_out, created_at)
           SELECT 'labeler' || i || '@bench', '', 'labeler', 'x', true, i > 16, now()
           FROM generate_series(1, 20) i""",
        f"""INSERT INTO prompts (id, text, text_hash, source, split, metadata, pii_counts,
                                 created_at, category, end_user_id)
           SELECT i, 'Prompt ' || i || ': explain ' || md5(i::text) || ' in plain words.',
                  md5('p' || i), 'imported', 'train', '{{}}', '{{}}', now(), 'generation',
                  'user' || (i % 997)
           FROM generate_series(1, {n}) i""",
        f"""INSERT INTO candidates (prompt_id, text, model, sampling_params, created_at)
           SELECT i, 'Answer ' || j || ' to ' || i || ': ' || repeat(md5((i * 10 + j)::text), 3),
                  'policy-bench', '{{}}', now()
           FROM generate_series(1, {n}) i, generate_series(1, 4 + i % 6) j
           ORDER BY i, j""",
        """INSERT INTO tasks (id, kind, prompt_id, candidate_ids, required_labels, done_labels,
                               priority, gold, params, state, created_at)
           SELECT p.id, 'rank', p.id, json_agg(c.id ORDER BY c.id), 1, 1, 0, false, '{}',
                  'closed', now()
           FROM prompts p JOIN candidates c ON c.prompt_id = p.id GROUP BY p.id""",
        """INSERT INTO assignments (id, task_id, user_id, state, display_order, leased_at,
                                    expires_at)
           SELECT t.id, t.id, 1 + t.id % 20, 'submitted', t.candidate_ids, now(), now()
           FROM tasks t""",
        # Groups best first: candidates by descending id; every fifth ranking ties the top two.
        """INSERT INTO rankings (id, task_id, assignment_id, user_id, prompt_id, groups,
                                 display_order, seconds_spent, idempotency_key, created_at)
           SELECT t.id, t.id, t.id, 1 + t.id % 20, t.id, grp.groups, t.candidate_ids, 60,
                  'k' || t.id, now()
           FROM tasks t
           JOIN LATERAL (
             SELECT json_agg(members ORDER BY gi) AS groups FROM (
               SELECT gi, json_agg(id ORDER BY id DESC) AS members FROM (
                 SELECT c.id, CASE WHEN t.id % 5 = 0 AND rn <= 2 THEN 1 ELSE rn END AS gi
                 FROM (SELECT (value)::int AS id,
                              row_number() OVER (ORDER BY (value)::int DESC) AS rn
                       FROM json_array_elements_text(t.candidate_ids)) c
               ) ranked GROUP BY gi
             ) groups
           ) grp ON true""",
        "SELECT setval('rankings_id_seq', (SELECT max(id) FROM rankings))",
    ]


def cutoff_for(pairs: int) -> int:
    """The highest ranking id whose rankings together give at least `pairs` comparisons."""
    import psycopg

    with psycopg.connect(_psycopg_url(DB_URL)) as conn:
        row = conn.execute(
            """SELECT id FROM (
                 SELECT r.id, sum(k * (k - 1) / 2 - CASE WHEN r.id %% 5 = 0 THEN 1 ELSE 0 END)
                          OVER (ORDER BY r.id) AS total
                 FROM rankings r, LATERAL json_array_length(r.display_order) k
               ) s WHERE total >= %s ORDER BY id LIMIT 1""", (pairs,)).fetchone()
    if row is None:
        raise SystemExit(f"the bench database has fewer than {pairs} comparisons")
    return int(row[0])


def child_export(cutoff: int, out: Path) -> dict[str, float]:
    """Run in a subprocess: export comparisons up to `cutoff` with the app's service."""
    os.environ["RLHF_DATABASE_URL"] = DB_URL
    os.environ["RLHF_EXPORTS_DIR"] = str(out)
    import app.models  # noqa: F401 - every table, so foreign keys resolve
    from app.db import session_scope
    from app.exports import service
    from app.exports.schemas import ExportCreate

    start = time.perf_counter()
    with session_scope() as db:
        request = ExportCreate(kind="comparisons", format="jsonl", filters={"max_id": cutoff})
        snapshot = service.create_snapshot(db=db, user=None, request=request)
        service.build(db=db, snapshot=snapshot)
        rows, size = snapshot.rows, snapshot.manifest["files"][0]["bytes"]
        db.rollback()  # keep the bench database as it was
    return _measured(start, rows, size)


def child_copy(cutoff: int, out: Path) -> dict[str, float]:
    """Run in a subprocess: PostgreSQL's COPY of the same pairs, written to a file."""
    import psycopg

    start = time.perf_counter()
    rows = size = 0
    with psycopg.connect(_psycopg_url(DB_URL)) as conn, open(out / "copy.tsv", "wb") as f:
        with conn.cursor().copy(COPY_SQL.format(cutoff=int(cutoff))) as copy:
            for chunk in copy:
                f.write(chunk)
                size += len(chunk)
                rows += bytes(chunk).count(b"\n")
    return _measured(start, rows, size)


def _measured(start: float, rows: int, size: int) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": time.perf_counter() - start, "rows": rows, "bytes": size,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def existing_rankings() -> int:
    """Rankings in a bench database left by an earlier run (0 if there is none)."""
    import psycopg

    try:
        with psycopg.connect(_psycopg_url(DB_URL)) as conn:
            return int(conn.execute("SELECT count(*) FROM rankings").fetchone()[0])
    except psycopg.Error:
        return 0


def run_child(what: str, cutoff: int) -> dict[str, float]:
    """One measurement in a fresh interpreter (its own peak memory)."""
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-") as tmp:
        out = subprocess.run(
            [sys.executable, __file__, "--child", what, "--cutoff", str(cutoff), "--tmp", tmp],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--keep-db", action="store_true",
                        help="reuse a kept bench database if large enough, and keep it")
    parser.add_argument("--child", choices=["export", "copy"])
    parser.add_argument("--cutoff", type=int)
    parser.add_argument("--tmp", type=Path)
    args = parser.parse_args()
    if args.child:
        fn = child_export if args.child == "export" else child_copy
        print(json.dumps(fn(args.cutoff, args.tmp)))
        return
    sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    t0 = time.perf_counter()
    n_rankings = int(sizes[-1] / AVG_PAIRS) + 50
    if args.keep_db and existing_rankings() >= n_rankings:
        print(f"reusing bench database {DB_NAME}")
    else:
        create_database(n_rankings)
        print(f"bench database {DB_NAME} built in {time.perf_counter() - t0:.1f}s")
    try:
        report(sizes)
    finally:
        if not (args.keep or args.keep_db):
            import psycopg

            with psycopg.connect(_psycopg_url(f"{SERVER}/postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def report(sizes: list[int]) -> None:
    """Measure and print each size, then the two target ratios."""
    results = {}
    header = ("rows", "tool", "seconds", "CPU s", "rows/s", "MB out", "peak RSS MB")
    print("{:>9} {:>8} {:>8} {:>7} {:>10} {:>8} {:>12}".format(*header))
    for size in sizes:
        cutoff = cutoff_for(size)
        for what in ("copy", "export"):
            r = run_child(what, cutoff)
            results[(size, what)] = r
            print(f"{int(r['rows']):>9} {what:>8} {r['seconds']:>8.2f} {r['cpu_s']:>7.2f} "
                  f"{r['rows'] / r['seconds']:>10,.0f} {r['bytes'] / 1e6:>8.1f} "
                  f"{r['peak_rss_mb']:>12.1f}")
        same = results[(size, "copy")]["rows"] == results[(size, "export")]["rows"]
        print(f"{'':>9} same row count as COPY: {same}")
    small, large = sizes
    ratio = results[(large, "export")]["seconds"] / results[(large, "copy")]["seconds"]
    growth = results[(large, "export")]["peak_rss_mb"] - results[(small, "export")]["peak_rss_mb"]
    print(f"export / COPY time at {large:,} rows: {ratio:.2f}x (target <= 3x): "
          f"{'OK' if ratio <= 3 else 'MISSED'}")
    print(f"peak RSS growth {small:,} -> {large:,} rows: {growth:+.1f} MB (target <= 50 MB): "
          f"{'OK' if growth <= 50 else 'MISSED'}")


if __name__ == "__main__":
    main()
