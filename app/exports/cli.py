"""`rlhf-studio export KIND …`: build a snapshot from the command line with a progress bar."""

from pathlib import Path
from typing import Any

import typer

KIND_HELP = "sft | rankings | comparisons | grouped | ratings | prompts"


def register(root: typer.Typer) -> None:
    """Add the `export` command."""

    @root.command("export")
    def export(
        kind: str = typer.Argument(..., help=KIND_HELP),
        fmt: str = typer.Option("jsonl", "--format", help="jsonl | parquet"),
        out: Path | None = typer.Option(
            None, "--out", help="Snapshot DIRECTORY to create (must not exist), which will "
                                "hold the data file and manifest.json; default: a new "
                                "directory under RLHF_EXPORTS_DIR."),
        chat: bool = typer.Option(False, "--chat", help="sft only: {'messages': [...]} rows."),
        split: str | None = typer.Option(None, help="train | valid | test"),
        since: str | None = typer.Option(None, help="created_at >= this (ISO date/time, UTC)"),
        until: str | None = typer.Option(None, help="created_at < this (ISO date/time, UTC)"),
        task_kind: str | None = typer.Option(None, help="demonstrate | rank | rate | write_prompt"),
        labeler: list[int] | None = typer.Option(None, help="Labeler id (repeatable)."),
        held_out: bool | None = typer.Option(
            None, "--held-out/--training-labelers", help="Only held-out / only training labelers."),
        model_version: int | None = typer.Option(None, help="Outputs of this model version id."),
        min_agreement: float | None = typer.Option(None, help="Labelers at or above (0..1)."),
        max_id: int | None = typer.Option(None, help="Highest source id (a manifest's max_id)."),
        include_rejected: bool = typer.Option(
            False, "--include-rejected", help="sft, prompts: also what a reviewer rejected."),
    ) -> None:
        """Export a dataset snapshot: data file + manifest.json, recorded in the database."""
        filters = {
            "split": split, "since": since, "until": until, "task_kind": task_kind,
            "labeler_ids": labeler or None, "held_out": held_out,
            "model_version_id": model_version, "min_agreement": min_agreement, "max_id": max_id,
            "include_rejected": True if include_rejected else None,
        }
        _run(kind, fmt, out, chat, {k: v for k, v in filters.items() if v is not None})


# Names that read as a data file: `--out cmp.jsonl` would otherwise make a directory of it.
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".gz", ".zst")


def _run(kind: str, fmt: str, out: Path | None, chat: bool, filters: dict[str, Any]) -> None:
    from pydantic import ValidationError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from app.console import console, fail
    from app.db import session_scope
    from app.exports import service
    from app.exports.schemas import ExportCreate, describe

    try:
        request = ExportCreate.model_validate(
            {"kind": kind, "format": fmt, "chat": chat, "filters": filters})
    except ValidationError as exc:
        fail(describe(exc))
        return
    if out is not None and out.suffix.lower() in FILE_SUFFIXES:
        fail(f"--out names the snapshot directory to create, which will hold the data file "
             f"and manifest.json; {str(out)!r} looks like a file name. Give a directory, "
             f"e.g. --out {str(out.with_suffix(''))!r}.")
        return
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            job = bar.add_task(f"export {kind}", total=None)
            with session_scope() as db:
                snapshot = service.create_snapshot(db=db, user=None, request=request)
                service.build(db=db, snapshot=snapshot, out_dir=out,
                              on_progress=lambda done, total: bar.update(job, completed=done,
                                                                         total=total))
                manifest, path, sid = snapshot.manifest, snapshot.path, snapshot.id
    except service.ExportError as exc:
        fail(str(exc))
        return
    data = manifest["files"][0]
    console.print(f"snapshot {sid}: {data['rows']} rows → {path}/{data['name']}")
    console.print(f"sha256 {data['sha256']}  (manifest: {path}/manifest.json)")
