"""`rlhf-studio tasks …`: create labeling work and inspect the queue."""

import typer
from rich.table import Table

tasks_cli = typer.Typer(help="Labeling tasks and the queue.", no_args_is_help=True)


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


def register(root: typer.Typer) -> None:
    """Add `tasks` to the `rlhf-studio` command."""
    root.add_typer(tasks_cli, name="tasks")
