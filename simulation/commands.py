"""`rlhf-studio simulate …`: added to the command through the `rlhf_studio.cli` entry point
(pyproject.toml), since the app knows nothing of its clients."""

import typer

from simulation import loop  # noqa: F401 - registers `simulate loop` on simulate_cli
from simulation.cli import simulate_cli


def register(root: typer.Typer) -> None:
    """Add `simulate` (and `simulate loop`) to the `rlhf-studio` command."""
    root.add_typer(simulate_cli, name="simulate")
