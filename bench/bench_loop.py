"""The loop's overhead: a round through the jobs (Celery worker, heartbeats, metrics into
PostgreSQL, registration) against the same stages run directly with `python -m training`
on the same snapshot files; and a training stage's steps/s with metric reporting on vs off.

Targets (issue "Close the loop"): round wall time through the jobs ≤ 1.15× direct; steps/s
with reporting on ≤ 3 % slower than off. Both pairs run back to back in this process, so
the figures compare like with like on a busy machine.

    .venv/bin/python bench/bench_loop.py [--demos 24] [--ranks 24] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="rlhf-bench-loop-"))
DB_NAME = "rlhf_bench_loop"
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


def start_worker() -> subprocess.Popen[bytes]:
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "app.worker", "worker", "-Q", "default,gpu",
         "--pool", "solo", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def through_jobs() -> tuple[float, dict]:
    """Seconds from creating a round to its success (export, sft, rm, ppo), with a worker."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.rounds import service as rounds

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
                break
        time.sleep(0.2)
    assert state == "succeeded", state
    return time.perf_counter() - started, out


def direct(jobs_run: dict) -> float:
    """The same stages on the same snapshot files, as `python -m training` commands."""
    from app.rounds import stage_config

    snaps = jobs_run["export"]["outputs"]["snapshots"]
    base = jobs_run["sft"]["parent"]["path"]
    out = WORK / "direct"
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
    started = time.perf_counter()
    from app.db import session_scope
    from app.exports import service as exports
    from app.exports.schemas import ExportCreate

    for kind in ("sft", "grouped", "prompts"):  # the export the round did, for fairness
        with session_scope() as db:
            snap = exports.create_snapshot(db=db, user=None, request=ExportCreate(
                kind=kind, filters={"split": "train"}))  # type: ignore[arg-type]
            exports.build(db=db, snapshot=snap)
    for argv in commands:
        stage = argv[0]
        flags = stage_config.argv(stage, stage_config.overrides(stage, CONFIG[stage]))
        subprocess.run([sys.executable, "-m", "training", "--threads", "1", *argv, *flags],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def reporting(jobs_run: dict, epochs: int) -> tuple[float, float]:
    """SFT seconds with step events streamed into a job's heartbeat vs a plain run."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.child import run_child
    from app.jobs.kinds import JobContext
    from app.jobs.runner import Heartbeat

    snaps = jobs_run["export"]["outputs"]["snapshots"]
    argv = ["--threads", "1", "sft", "--base-model", jobs_run["sft"]["parent"]["path"],
            "--train-data", snaps["sft"]["path"], "--epochs", str(epochs), "--batch-size", "4",
            "--eval-prompts", "0"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "training", *argv, "--out", str(WORK / "plain")],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plain = time.perf_counter() - started
    with session_scope() as db:
        job = jobs.submit(db=db, kind="sft", config={})
        job.state, job.worker = "running", jobs.worker_id()
        job_id = job.id
    ctx = JobContext(job_id=job_id, kind="sft", config={}, inputs={}, workdir=WORK)
    beat = Heartbeat(ctx, jobs.worker_id())
    beat.start()
    started = time.perf_counter()
    run_child(ctx, [*argv, "--out", str(WORK / "reported")])
    reported = time.perf_counter() - started
    beat.stop()
    return plain, reported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=24)
    parser.add_argument("--ranks", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=60, help="SFT epochs, reporting pair")
    args = parser.parse_args()
    setup_database()
    subprocess.run([sys.executable, "-m", "training", "--threads", "1", "tiny", "--out",
                    str(WORK / "models" / "base-tiny")], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seed(args.demos, args.ranks)
    worker = start_worker()
    try:
        via_jobs, run = through_jobs()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    plain_round = direct(run)
    plain, reported = reporting(run, args.epochs)
    figures = {
        "round_through_jobs_s": round(via_jobs, 1), "round_direct_s": round(plain_round, 1),
        "round_ratio": round(via_jobs / plain_round, 3), "round_target": 1.15,
        "sft_plain_s": round(plain, 1), "sft_reported_s": round(reported, 1),
        "reporting_slowdown": round(reported / plain - 1, 3), "reporting_target": 0.03,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
