"""`rlhf-studio train round|sft|rm|ppo` and `rlhf-studio jobs list|show|cancel|retry`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

train_cli = typer.Typer(help="Start training rounds (export → SFT → RM → PPO).",
                        no_args_is_help=True)
jobs_cli = typer.Typer(help="Training and generation jobs.", no_args_is_help=True)
store_cli = typer.Typer(help="The store the machines share (RLHF_STORE_URL).",
                        no_args_is_help=True)
ENDED = ("succeeded", "failed", "cancelled")


def parse_sets(sets: list[str], config_file: Path | None) -> dict[str, dict[str, Any]]:
    """`--set sft.epochs=2` pairs (values read as JSON where they parse) over a JSON file."""
    from app.console import fail

    config: dict[str, dict[str, Any]] = {}
    if config_file is not None:
        try:
            config = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            fail(f"cannot read {config_file}: {exc}")
    for item in sets:
        key, sep, raw = item.partition("=")
        stage, dot, field = key.partition(".")
        if not sep or not dot or not field:
            fail(f"--set takes STAGE.FIELD=VALUE (e.g. sft.epochs=2), not {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        config.setdefault(stage.strip(), {})[field.strip()] = value
    return config


def start_round(*, stages: list[str] | None, config: dict[str, Any], promote: bool | str,
                generate: dict[str, Any] | None, wait: bool, as_json: bool,
                evaluate: dict[str, Any] | None = None) -> None:
    """Create a round, send its first job, and (with --wait) follow it to the end (or to
    its wait for judgment: exit 3)."""
    from app.console import console, fail
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.errors import JobError
    from app.rounds import service as rounds

    judging = _judging(promote, evaluate)
    try:
        jobs.require_broker()
        with session_scope() as db:
            rnd = rounds.create_round(
                db=db, user=None, stages=stages, config=config, promote=judging.promote,
                generate=generate, trigger="cli",
                evaluate=judging.evaluate.model_dump() if judging.evaluate else None)
            round_id = rnd.id
            first = rounds.current_jobs(db=db, round_id=round_id)[0].id
    except JobError as exc:
        fail(str(exc))
        return
    jobs.dispatch([first])
    if not as_json:
        console.print(f"round {round_id} started")
    state = follow(round_id, quiet=as_json) if wait else "queued"
    if as_json:
        console.print_json(json.dumps(round_json(round_id)))
    if wait and state == "awaiting_judgment":
        raise typer.Exit(3)
    if wait and state != "succeeded":
        raise typer.Exit(1)


def _judging(promote: bool | str, evaluate: dict[str, Any] | None) -> Any:
    """The options as the API's RoundJudging (exit 1 with why when they are not)."""
    from pydantic import ValidationError

    from app.console import fail
    from app.rounds.schemas import RoundJudging

    try:
        return RoundJudging.model_validate({"promote": promote, "evaluate": evaluate})
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        raise typer.Exit(1) from None


def round_json(round_id: int) -> dict[str, Any]:
    """The round and its jobs as the API shows them."""
    from app.db import session_scope
    from app.rounds import service as rounds
    from app.rounds.schemas import JobRead, RoundRead

    with session_scope() as db:
        out = RoundRead.model_validate(rounds.get_round(db=db, round_id=round_id))
        out.jobs = [JobRead.model_validate(j) for j in rounds.round_jobs(db=db, round_id=round_id)]
        return out.model_dump(mode="json")


def follow(round_id: int, quiet: bool = False, poll_s: float = 1.0) -> str:
    """Show a progress bar per job until the round ends; returns its final state."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from app.console import console
    from app.db import session_scope
    from app.rounds import service as rounds

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[state]}"),
               TimeElapsedColumn())
    bars: dict[int, Any] = {}
    with Progress(*columns, console=console, disable=quiet) as progress:
        while True:
            with session_scope() as db:
                rnd = rounds.get_round(db=db, round_id=round_id)
                state = rnd.state
                current = [(j.id, j.kind, j.state, j.progress, j.attempt)
                           for j in rounds.current_jobs(db=db, round_id=round_id)]
            for job_id, kind, job_state, fraction, attempt in current:
                if job_id not in bars:
                    label = f"{kind} (job {job_id}" + (f", attempt {attempt})" if attempt > 1
                                                      else ")")
                    bars[job_id] = progress.add_task(label, total=1.0, state=job_state)
                progress.update(bars[job_id], completed=fraction, state=job_state)
            if state in ENDED or state == "awaiting_judgment":
                break
            time.sleep(poll_s)
    if not quiet:
        console.print(f"round {round_id} {state}" + (f": {rnd.error}" if rnd.error else ""))
    return state


def register(root: typer.Typer) -> None:
    """Add `train`, `jobs` and `store`."""
    root.add_typer(train_cli, name="train")
    root.add_typer(jobs_cli, name="jobs")
    root.add_typer(store_cli, name="store")


SETS = typer.Option([], "--set", help="STAGE.FIELD=VALUE, e.g. ppo.kl_coef=0.05 (repeatable)")
CONFIG = typer.Option(None, "--config", help="JSON file of {stage: {field: value}}")
WAIT = typer.Option(False, "--wait", help="Follow the round; exit 0 only if it succeeded")
JSON = typer.Option(False, "--json", help="Print the round and its jobs as JSON")


@train_cli.command("round")
def train_round(
    stages: str = typer.Option("sft,rm,ppo", help="Comma-separated stages, in pipeline order"),
    promote: bool = typer.Option(False, "--promote", help="Promote the new models at the end"),
    promote_if_better: bool = typer.Option(
        False, "--promote-if-better",
        help="Promote only once people prefer the new policy in its campaign (implies a "
             "campaign; --wait then exits 3 while the round waits for judgment)"),
    evaluate: bool = typer.Option(False, "--evaluate",
                                  help="After training, a blind campaign of the new policy"),
    evaluate_prompts: int | None = typer.Option(
        None, "--evaluate-prompts", help="Test prompts in the campaign (default: all, up to 100)"),
    evaluate_overlap: int = typer.Option(1, "--evaluate-overlap", help="Judgments per item"),
    judges: str = typer.Option("held_out", "--judges", help="held_out | all"),
    generate_k: int | None = typer.Option(None, "--generate-k",
                                          help="After promotion, K candidates per prompt"),
    generate_prompts: int = typer.Option(50, "--generate-prompts", help="Prompts to generate for"),
    overlap: int = typer.Option(1, help="Labels wanted per generated rank task"),
    sets: list[str] = SETS, config: Path | None = CONFIG, wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Start a round: export → stages (→ evaluate) (→ promote → generate)."""
    generate = ({"k": generate_k, "n_prompts": generate_prompts, "overlap": overlap}
                if generate_k else None)
    if promote and promote_if_better:
        from app.console import fail

        fail("Give --promote or --promote-if-better, not both.")
        return
    campaign = ({"n_prompts": evaluate_prompts, "overlap": evaluate_overlap, "judges": judges}
                if evaluate or promote_if_better or evaluate_prompts else None)
    start_round(stages=[s.strip() for s in stages.split(",") if s.strip()],
                config=parse_sets(sets, config),
                promote="if_better" if promote_if_better else promote, generate=generate,
                wait=wait, as_json=as_json, evaluate=campaign)


def _one_stage(stage: str) -> None:
    def command(sets: list[str] = SETS, config: Path | None = CONFIG, wait: bool = WAIT,
                as_json: bool = JSON,
                promote: bool = typer.Option(False, "--promote", help="Promote it")) -> None:
        start_round(stages=[stage], config=parse_sets(sets, config), promote=promote,
                    generate=None, wait=wait, as_json=as_json)

    command.__doc__ = (f"Run only the {stage} stage on a fresh snapshot (other models: the "
                       "active ones).")
    train_cli.command(stage)(command)


for _stage in ("sft", "rm", "ppo"):
    _one_stage(_stage)


@jobs_cli.command("list")
def jobs_list(round_id: int | None = typer.Option(None, "--round"),
              state: str | None = typer.Option(None), as_json: bool = JSON) -> None:
    """Jobs, newest first."""
    from rich.table import Table

    from app.console import console
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.rounds.schemas import JobRead

    with session_scope() as db:
        rows = [JobRead.model_validate(j).model_dump(mode="json")
                for j in jobs.list_jobs(db=db, round_id=round_id, state=state)]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("id", "kind", "round", "state", "progress", "attempt", "error")
    for j in rows:
        table.add_row(str(j["id"]), j["kind"], str(j["round_id"] or ""), j["state"],
                      f"{j['progress']:.0%}", str(j["attempt"]), (j["error"] or "")[:60])
    console.print(table)


@jobs_cli.command("show")
def jobs_show(job_id: int) -> None:
    """One job as JSON, with its log tail."""
    from app.console import console, fail
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.errors import JobError
    from app.jobs.logtext import readable
    from app.rounds.schemas import JobRead

    try:
        with session_scope() as db:
            job = jobs.get_job(db=db, job_id=job_id)
            out, tail = (JobRead.model_validate(job).model_dump(mode="json"),
                         readable(job.log_tail or ""))
    except JobError as exc:
        fail(str(exc))
        return
    console.print_json(json.dumps(out))
    if tail:
        console.print(tail[-4000:], markup=False, highlight=False)


@jobs_cli.command("cancel")
def jobs_cancel(job_id: int) -> None:
    """Cancel a job (a running one stops at its next step)."""
    from app.console import console, fail
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.errors import JobError
    from app.rounds import service as rounds

    try:
        with session_scope() as db:
            job = jobs.request_cancel(db=db, job_id=job_id)
            if job.round_id is not None:
                rounds.settle(db=db, round_id=job.round_id)
            state = job.state
    except JobError as exc:
        fail(str(exc))
        return
    console.print(f"job {job_id}: {state}")


@jobs_cli.command("retry")
def jobs_retry(job_id: int, wait: bool = WAIT) -> None:
    """A new attempt of a failed or cancelled job (and of the round stages it stopped)."""
    from app.console import console, fail
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.errors import JobError
    from app.rounds import service as rounds

    try:
        jobs.require_broker()
        with session_scope() as db:
            job = rounds.retry_job(db=db, job_id=job_id, user=None)
            new_id, round_id = job.id, job.round_id
    except JobError as exc:
        fail(str(exc))
        return
    jobs.dispatch([new_id])
    console.print(f"job {job_id} retried as job {new_id}")
    if wait and round_id is not None and follow(round_id) != "succeeded":
        raise typer.Exit(1)


@store_cli.command("sweep")
def store_sweep(dry_run: bool = typer.Option(False, "--dry-run",
                                             help="List what would be removed; remove nothing"),
                as_json: bool = JSON) -> None:
    """Remove the store's entries no model version or snapshot names, once their commit is
    older than RLHF_STORE_SWEEP_GRACE_HOURS (the beat does this hourly)."""
    from app import store
    from app.console import console, fail
    from app.db import session_scope
    from app.rounds import orphans

    shared = store.current()
    if shared is None:
        fail("No store is configured (RLHF_STORE_URL): there is nothing to sweep.")
        return
    try:
        with session_scope() as db:
            swept = orphans.sweep(db=db, shared=shared, dry_run=dry_run)
    except store.StoreError as exc:
        fail(f"The sweep stopped: {exc}")
        return
    if as_json:
        console.print_json(json.dumps({"dry_run": dry_run, **vars(swept)}))
        return
    verb = "would remove" if dry_run else "removed"
    for url in swept.removed:
        console.print(f"{verb} {url}", markup=False, highlight=False)
    console.print(f"{verb} {len(swept.removed)} entries; kept {len(swept.named)} that a "
                  f"version or snapshot names and {len(swept.young)} younger than the grace "
                  "period.", markup=False, highlight=False)
