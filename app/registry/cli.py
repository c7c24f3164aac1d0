"""`rlhf-studio models list|promote|rollback` and `rlhf-studio generate`."""

from __future__ import annotations

import json
from typing import Any

import typer

models_cli = typer.Typer(help="Model versions and their aliases.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add `models` and `generate`."""
    root.add_typer(models_cli, name="models")
    root.command("generate")(generate)


@models_cli.command("list")
def models_list(kind: str | None = typer.Option(None, help="base | sft | rm | policy"),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Model versions, newest first, with their aliases."""
    from rich.table import Table

    from app.console import console, fail
    from app.db import session_scope
    from app.jobs.errors import JobError
    from app.registry import service as registry

    try:
        with session_scope() as db:
            names = registry.aliases(db=db)
            rows: list[dict[str, Any]] = [
                    {"id": v.id, "kind": v.kind, "name": v.name, "parent_id": v.parent_id,
                     "snapshot_ids": registry.snapshot_ids(db=db, version_id=v.id),
                     "job_id": v.job_id, "metrics": v.metrics, "aliases": names.get(v.id, []),
                     "sha256": v.sha256, "path": v.path,
                     "created_at": v.created_at.isoformat()}
                    for v in registry.list_versions(db=db, kind=kind)]
    except JobError as exc:
        fail(str(exc))
        return
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("id", "kind", "name", "parent", "aliases", "created")
    for r in rows:
        table.add_row(str(r["id"]), r["kind"], r["name"], str(r["parent_id"] or ""),
                      ", ".join(r["aliases"]), r["created_at"][:16])
    console.print(table)


@models_cli.command("promote")
def models_promote(model_id: int) -> None:
    """Move `<kind>:active` to this version."""
    from app.console import console, fail
    from app.db import session_scope
    from app.jobs.errors import JobError
    from app.registry import service as registry

    try:
        with session_scope() as db:
            version = registry.promote(db=db, version_id=model_id, user_id=None)
            label = f"{version.kind}:active → version {version.id} ({version.name})"
    except JobError as exc:
        fail(str(exc))
        return
    console.print(label)


@models_cli.command("rollback")
def models_rollback(kind: str = typer.Argument(..., help="sft | rm | policy")) -> None:
    """Move `<kind>:active` back to where it pointed before its last move."""
    from app.console import console, fail
    from app.db import session_scope
    from app.jobs.errors import JobError
    from app.registry import service as registry

    try:
        with session_scope() as db:
            version = registry.rollback(db=db, kind=kind, user_id=None)
            label = f"{kind}:active → version {version.id} ({version.name})"
    except JobError as exc:
        fail(str(exc))
        return
    console.print(label)


def generate(
    model_id: int | None = typer.Option(None, "--model", help="Version id (default: the mix "
                                        "of policy:active, the previous policy and sft:active)"),
    k: int = typer.Option(4, help="Candidates per prompt (4..9)"),
    n_prompts: int = typer.Option(50, "--prompts", help="How many prompts"),
    overlap: int = typer.Option(1, help="Labels wanted per rank task"),
    priority: int = typer.Option(0, help="Task priority"),
    max_new_tokens: int = typer.Option(48, help="Response length cap in tokens"),
) -> None:
    """Sample fresh candidates and make rank tasks of them (a job on the gpu queue)."""
    from app.console import console, fail
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.errors import JobError
    from app.registry import generation

    config = {"k": k, "n_prompts": n_prompts, "overlap": overlap, "priority": priority,
              "max_new_tokens": max_new_tokens}
    if model_id is not None:
        config["model_id"] = model_id
    try:
        jobs.require_broker()
        with session_scope() as db:
            job_id = generation.request(db=db, config=config, user=None).id
    except JobError as exc:
        fail(str(exc))
        return
    jobs.dispatch([job_id])
    console.print(f"generate job {job_id} queued")
