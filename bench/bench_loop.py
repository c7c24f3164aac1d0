"""The loop's overhead: a round through the jobs (Celery worker, heartbeats, metrics into
PostgreSQL, registration) against the same stages run directly with `python -m training`
on the same snapshot files; and a training stage's steps/s with metric reporting on vs off.

Targets (issue "Close the loop"): round wall time through the jobs ≤ 1.15× direct; steps/s
with reporting on ≤ 3 % slower than off. Both pairs run back to back in this process, in
alternating order when repeated, so the figures compare like with like on a busy machine.
Each side is timed by wall clock and by CPU seconds (this process's and its children's:
the worker with its training children, or the direct commands), which a shared machine
distorts less; the figures are medians over the repeats with their spread.

The clock of a round starts once the worker answers a ping: a worker is a long-lived
process, so its own start-up (printed apart) is no part of a round's cost. The direct
commands run in a session of their own, as a job's child does (app/jobs/child.py): with
Linux's autogroup scheduling each session gets a fair share of a busy machine, so a child
in a new session would otherwise outrun the same command left in this one.

    .venv/bin/python bench/bench_loop.py [--demos 24] [--ranks 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="rlhf-bench-loop-"))
DB_NAME = os.environ.get("RLHF_BENCH_DB", "rlhf_bench_loop")
PG = os.environ.get("RLHF_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS = os.environ.get("RLHF_BENCH_REDIS", "redis://127.0.0.1:6379/14")
os.environ.update({
    "RLHF_DATABASE_URL": f"{PG}/{DB_NAME}", "RLHF_DATA_DIR": str(WORK),
    "RLHF_MODELS_DIR": str(WORK / "models"), "RLHF_EXPORTS_DIR": str(WORK / "exports"),
    "RLHF_REDIS_URL": REDIS, "RLHF_TRAIN_THREADS": "1", "RLHF_ENV": "test",
    "RLHF_SECRET_KEY": "bench-secret-key", "RLHF_ROUND_MIN_DEMONSTRATIONS": "4",
    "RLHF_ROUND_MIN_RANKINGS": "4", "TOKENIZERS_PARALLELISM": "false",
})
REPO = Path(__file__).resolve().parent.parent
CONFIG = {  # the quick preset's sizes, a little longer so the stages dominate start-up
    "sft": {"epochs": 6}, "rm": {"epochs": 2}, "ppo": {"steps": 10},
}


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process and its reaped children, or of a live
    process `pid` and its reaped children (from /proc: the worker and its stages)."""
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    mine = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + kids.ru_utime + kids.ru_stime


def setup_database() -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    admin.dispose()
    from alembic import command

    from app.db import alembic_config

    command.upgrade(alembic_config(), "head")


def seed(n_demos: int, n_ranks: int) -> None:
    """Prompts, demonstrations and rankings (more 'a' is better) through the services."""
    import hashlib

    import app.models  # noqa: F401 - every table, so foreign keys resolve
    from app.auth import service as auth
    from app.auth.models import Role
    from app.db import session_scope
    from app.labeling import service as labeling
    from app.labeling.schemas import SubmissionCreate
    from app.prompts.models import Candidate, Prompt, PromptSource, Split
    from app.queue import creation
    from app.queue import service as queue
    from app.queue.models import TaskKind

    with session_scope() as db:
        user = auth.create_user(db=db, email="bench@example.com", password="x" * 12,
                                role=Role.labeler)
        prompts = []
        for i in range(n_demos + n_ranks):
            text = f"Prompt {i}: describe a {['cat', 'dog', 'river', 'garden'][i % 4]} briefly."
            p = Prompt(text=text, text_hash=hashlib.sha256(text.encode()).hexdigest(),
                       source=PromptSource.imported, split=Split.train)
            db.add(p)
            prompts.append(p)
        db.flush()
        creation.create_demonstrate_tasks(db=db, prompt_ids=[p.id for p in prompts[:n_demos]],
                                          overlap=1)
        for p in prompts[n_demos:]:
            cands = [Candidate(prompt_id=p.id, text="a" * j + " b" * (5 - j), model="seed")
                     for j in range(4)]
            db.add_all(cands)
            db.flush()
            creation.create_rank_task(db=db, prompt_id=p.id, candidate_ids=[c.id for c in cands],
                                      overlap=1)
        uid = user.id
    for kind in (TaskKind.demonstrate, TaskKind.rank):
        while True:
            with session_scope() as db:
                from app.auth.models import User

                user = db.get(User, uid)
                lease = queue.next_task(db=db, user=user, kind=kind)
                if lease is None:
                    break
                body: dict = {"assignment_id": lease.id, "idempotency_key": f"bench-{lease.id:08d}",
                              "seconds_spent": 3}
                if kind == TaskKind.demonstrate:
                    body["text"] = "a calm and accurate answer with a few details"
                else:
                    texts = dict(db.query(Candidate.id, Candidate.text).filter(
                        Candidate.id.in_(lease.display_order)).all())
                    order = sorted(lease.display_order, key=lambda c: -texts[c].count("a"))
                    body["ranking"] = [[c] for c in order]
                    body["ratings"] = {str(c): {"likert": 4, "flags": []} for c in order}
                labeling.submit(db=db, user=user, task_id=lease.task_id,
                                body=SubmissionCreate(**body))


def start_worker() -> tuple[subprocess.Popen[bytes], float]:
    """A worker, and the seconds until it answered a ping (its start-up)."""
    import redis

    from app.worker import celery_app

    redis.Redis.from_url(REDIS).flushdb()
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "app.worker", "worker", "-Q", "default,gpu",
         "--pool", "solo", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not celery_app.control.ping(timeout=0.5):
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with status {worker.returncode}")
    return worker, time.perf_counter() - started


def through_jobs(worker_pid: int) -> tuple[float, float, dict]:
    """Seconds (wall, CPU of the worker with its stages and of this process) from creating
    a round to its success (export, sft, rm, ppo), and what its jobs read and wrote."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.rounds import service as rounds

    cpu_started = cpu_seconds(worker_pid) + cpu_seconds()
    started = time.perf_counter()
    with session_scope() as db:
        rnd = rounds.create_round(db=db, user=None, stages=["sft", "rm", "ppo"],
                                  config=CONFIG, exclusive=False)
        rid, first = rnd.id, rounds.current_jobs(db=db, round_id=rnd.id)[0].id
    jobs.dispatch([first])
    while True:
        with session_scope() as db:
            state = rounds.get_round(db=db, round_id=rid).state
            if state in ("succeeded", "failed", "cancelled"):
                done = {j.kind: j for j in rounds.current_jobs(db=db, round_id=rid)}
                out = {k: dict(j.inputs) | {"outputs": dict(j.outputs)} for k, j in done.items()}
                seconds = {k: round((j.finished_at - j.started_at).total_seconds(), 1)
                           for k, j in done.items() if j.started_at and j.finished_at}
                break
        time.sleep(0.2)
    wall = time.perf_counter() - started
    print(json.dumps({"job_seconds": seconds}), flush=True)
    assert state == "succeeded", state
    return wall, cpu_seconds(worker_pid) + cpu_seconds() - cpu_started, out


def direct(jobs_run: dict) -> tuple[float, float]:
    """The same stages on the same snapshot files, as `python -m training` commands."""
    from app.rounds import stage_config

    snaps = jobs_run["export"]["outputs"]["snapshots"]
    base = jobs_run["sft"]["parent"]["path"]
    out = WORK / "direct"
    shutil.rmtree(out, ignore_errors=True)
    pretrain = jobs_run["ppo"].get("reward_model") and str(Path(base).with_name(
        "base-tiny-pretrain.jsonl"))
    commands = [
        ["sft", "--base-model", base, "--train-data", snaps["sft"]["path"],
         "--out", str(out / "sft")],
        ["rm", "--base-model", str(out / "sft"), "--train-data", snaps["grouped"]["path"],
         "--demonstrations", snaps["sft"]["path"], "--out", str(out / "rm")],
        ["ppo", "--policy-model", str(out / "sft"), "--reward-model", str(out / "rm"),
         "--prompts", snaps["prompts"]["path"], "--pretrain-data", str(pretrain),
         "--out", str(out / "ppo")],
    ]
    cpu_started, started = cpu_seconds(), time.perf_counter()
    from app.db import session_scope
    from app.exports import service as exports
    from app.exports.schemas import ExportCreate

    for kind in ("sft", "grouped", "prompts"):  # the export the round did, for fairness
        with session_scope() as db:
            snap = exports.create_snapshot(db=db, user=None, request=ExportCreate(
                kind=kind, filters={"split": "train"}))  # type: ignore[arg-type]
            exports.build(db=db, snapshot=snap)
    seconds = {"export": round(time.perf_counter() - started, 1)}
    for argv in commands:
        stage, stage_started = argv[0], time.perf_counter()
        flags = stage_config.argv(stage, stage_config.overrides(stage, CONFIG[stage]))
        subprocess.run([sys.executable, "-m", "training", "--threads", "1", *argv, *flags],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       start_new_session=True)
        seconds[stage] = round(time.perf_counter() - stage_started, 1)
    print(json.dumps({"direct_seconds": seconds}), flush=True)
    return time.perf_counter() - started, cpu_seconds() - cpu_started


def reporting(jobs_run: dict, epochs: int, reported_first: bool) -> dict[str, tuple[float, float]]:
    """SFT (wall, CPU) seconds with step events streamed into a job's heartbeat (this
    process's reader and heartbeat threads counted) vs a plain run."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.child import run_child
    from app.jobs.kinds import JobContext
    from app.jobs.runner import Heartbeat

    snaps = jobs_run["export"]["outputs"]["snapshots"]
    argv = ["--threads", "1", "sft", "--base-model", jobs_run["sft"]["parent"]["path"],
            "--train-data", snaps["sft"]["path"], "--epochs", str(epochs), "--batch-size", "4",
            "--eval-prompts", "0"]

    def plain() -> None:
        subprocess.run([sys.executable, "-m", "training", *argv, "--out", str(WORK / "plain")],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True)

    def reported() -> None:
        with session_scope() as db:
            job = jobs.submit(db=db, kind="sft", config={})
            job.state, job.worker = "running", jobs.worker_id()
            job_id = job.id
        ctx = JobContext(job_id=job_id, kind="sft", config={}, inputs={}, workdir=WORK)
        beat = Heartbeat(ctx, jobs.worker_id())
        beat.start()
        run_child(ctx, [*argv, "--out", str(WORK / "reported")])
        beat.stop()

    timed = {}
    for name, run in sorted({"plain": plain, "reported": reported}.items(),
                            reverse=reported_first):
        cpu_started, started = cpu_seconds(), time.perf_counter()
        run()
        timed[name] = (time.perf_counter() - started, cpu_seconds() - cpu_started)
    return timed


def spread(values: list[float], digits: int = 3) -> dict[str, object]:
    """Median and range of repeated figures."""
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


def load() -> str:
    """The machine's load averages (1, 5, 15 min) and CPU count, as uptime says them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=24)
    parser.add_argument("--ranks", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=60, help="SFT epochs, reporting pair")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each pair")
    args = parser.parse_args()
    load_before = load()
    setup_database()
    subprocess.run([sys.executable, "-m", "training", "--threads", "1", "tiny", "--out",
                    str(WORK / "models" / "base-tiny")], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seed(args.demos, args.ranks)
    worker, startup = start_worker()
    rounds: list[dict[str, float]] = []
    run: dict = {}
    try:
        for i in range(args.repeats):  # odd repeats run the direct side first
            if i % 2 and run:
                plain_wall, plain_cpu = direct(run)
            jobs_wall, jobs_cpu, run = through_jobs(worker.pid)
            if not i % 2:
                plain_wall, plain_cpu = direct(run)
            rounds.append({"jobs_s": jobs_wall, "jobs_cpu_s": jobs_cpu, "direct_s": plain_wall,
                           "direct_cpu_s": plain_cpu})
            print(json.dumps({"round": i, **{k: round(v, 2) for k, v in rounds[-1].items()}}),
                  flush=True)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    steps = []
    for i in range(args.repeats):
        timed = reporting(run, args.epochs, reported_first=bool(i % 2))
        steps.append(timed)
        shown = {f"{k}_{unit}": round(v[j], 2) for k, v in timed.items()
                 for j, unit in enumerate(("s", "cpu_s"))}
        print(json.dumps({"reporting": i, **shown}), flush=True)
    figures = {
        "load_before": load_before, "load_after": load(), "repeats": args.repeats,
        "worker_startup_s": round(startup, 1),
        "round_through_jobs_s": spread([r["jobs_s"] for r in rounds], 1),
        "round_direct_s": spread([r["direct_s"] for r in rounds], 1),
        "round_through_jobs_cpu_s": spread([r["jobs_cpu_s"] for r in rounds], 1),
        "round_direct_cpu_s": spread([r["direct_cpu_s"] for r in rounds], 1),
        "round_ratio": spread([r["jobs_s"] / r["direct_s"] for r in rounds]),
        "round_cpu_ratio": spread([r["jobs_cpu_s"] / r["direct_cpu_s"] for r in rounds]),
        "round_target": 1.15,
        "sft_plain_s": spread([t["plain"][0] for t in steps], 1),
        "sft_reported_s": spread([t["reported"][0] for t in steps], 1),
        "sft_plain_cpu_s": spread([t["plain"][1] for t in steps], 1),
        "sft_reported_cpu_s": spread([t["reported"][1] for t in steps], 1),
        "reporting_slowdown": spread([t["reported"][0] / t["plain"][0] - 1 for t in steps]),
        "reporting_cpu_slowdown": spread([t["reported"][1] / t["plain"][1] - 1 for t in steps]),
        "reporting_target": 0.03,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
