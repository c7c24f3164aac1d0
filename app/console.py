"""The terminal every command writes to: output, errors, and the one way a command fails.

Core: each domain's `cli.py` prints through these, so no domain imports the `rlhf-studio`
command itself (app.cli, a face that imports the domains)."""

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print an error a person can act on and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)
