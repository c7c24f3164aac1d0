"""`rlhf-studio tasks …` and `rlhf-studio candidates import`: create labeling work and
inspect the queue."""

from pathlib import Path

import typer
from rich.table import Table

tasks_cli = typer.Typer(help="Labeling tasks and the queue.", no_args_is_help=True)
candidates_cli = typer.Typer(help="Candidates (model outputs) to rank or rate.",
                             no_args_is_help=True)


@tasks_cli.command("create-demonstrate")
def create_demonstrate(
    overlap: int = typer.Option(1, help="How many different labelers demonstrate each prompt."),
    priority: int = typer.Option(0, help="Higher is served first."),
) -> None:
    """A demonstrate task for every train prompt that has none."""
    from app.console import console, fail
    from app.db import session_scope
    from app.queue import service as queue

    try:
        with session_scope() as db:
            n = queue.create_demonstrate_tasks_for_train_prompts(
                db=db, overlap=overlap, priority=priority)
    except queue.QueueError as exc:
        fail(str(exc))
    console.print(f"created {n} demonstrate tasks (overlap {overlap}, priority {priority})")


@tasks_cli.command("create-write-prompt")
def create_write_prompt(
    kind: str = typer.Option("plain", help="plain | few_shot | user_based"),
    count: int = typer.Option(1, help="Tasks to make (per use case for user_based)."),
    overlap: int = typer.Option(1), priority: int = typer.Option(0),
) -> None:
    """Prompt-writing tasks for labelers."""
    from app.console import console, fail
    from app.db import session_scope
    from app.prompts.models import PromptKind
    from app.queue import service as queue

    if kind not in {k.value for k in PromptKind}:
        fail(f"unknown prompt kind {kind!r}: use plain, few_shot or user_based")
    try:
        with session_scope() as db:
            tasks = queue.create_write_prompt_tasks(
                db=db, prompt_kind=PromptKind(kind), count=count, overlap=overlap,
                priority=priority)
            n = len(tasks)
    except queue.QueueError as exc:
        fail(str(exc))
    console.print(f"created {n} write_prompt tasks ({kind})")


@tasks_cli.command("stats")
def stats() -> None:
    """Task counts and label progress by kind and state."""
    from app.console import console
    from app.db import session_scope
    from app.queue import service as queue

    table = Table("kind", "state", "tasks", "done", "required", "leased")
    with session_scope() as db:
        for s in queue.task_stats(db=db):
            table.add_row(s["kind"].value, s["state"].value, str(s["tasks"]),
                          str(s["done_labels"]), str(s["required_labels"]),
                          str(s["leased_labels"]))
    console.print(table)


@tasks_cli.command("expire-leases")
def expire() -> None:
    """Free the slots of lapsed leases now (the beat task does this every minute)."""
    from app.console import console
    from app.db import session_scope
    from app.queue import service as queue

    with session_scope() as db:
        n = queue.expire_leases(db=db)
    console.print(f"expired {n} leases")


@candidates_cli.command("import")
def import_candidates(
    path: Path = typer.Argument(..., help="JSONL: {prompt | prompt_id, candidates: [...]}"),
    rank_tasks: bool = typer.Option(False, "--rank-tasks",
                                    help="One rank task per row with 4..9 candidates."),
    overlap: int = typer.Option(1, help="Labelers per rank task."),
    priority: int = typer.Option(0),
) -> None:
    """Import candidates for prompts (creating new prompts under the import rules)."""
    from app.console import console, fail
    from app.db import session_scope
    from app.prompts.cli import print_issues, progress_bar, read_lines
    from app.queue.candidates import import_candidates_file
    from app.queue.errors import QueueError

    if not 1 <= overlap <= 50:
        fail("--overlap must be between 1 and 50")
    data, total = read_lines(path)
    bar, total, label = progress_bar(total, "importing")
    try:
        with bar, session_scope() as db:
            task = bar.add_task(label, total=total)
            r = import_candidates_file(db=db, data=data, rank_tasks=rank_tasks, overlap=overlap,
                                       priority=priority, progress=lambda: bar.advance(task))
    except QueueError as exc:
        fail(str(exc))
        return
    console.print(f"rows {r.rows}: prompts created {r.prompts_created}, reused "
                  f"{r.prompts_reused}; candidates created {r.candidates_created}, reused "
                  f"{r.candidates_reused}; rank tasks {r.rank_tasks}; rejected {r.rejected}")
    print_issues(r.issues)


def register(root: typer.Typer) -> None:
    """Add `tasks` and `candidates` to the `rlhf-studio` command."""
    root.add_typer(tasks_cli, name="tasks")
    root.add_typer(candidates_cli, name="candidates")
