"""`rlhf-studio prompts import`."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from app.prompts.rules import ImportRules

prompts_cli = typer.Typer(help="Prompts: import under the paper's data rules.",
                          no_args_is_help=True)


def read_lines(path: Path) -> tuple[bytes, int]:
    from app.console import fail

    if not path.is_file():
        fail(f"no such file: {path}")
    data = path.read_bytes()
    return data, sum(1 for line in data.splitlines() if line.strip())


def progress_bar(total: int, label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(), transient=False), total, label


def print_issues(issues: list[dict[str, Any]]) -> None:
    from app.console import console

    for issue in issues[:50]:
        console.print(f"  line {issue['line']}: {issue['outcome']}: {issue['reason']}",
                      markup=False, highlight=False)
    if len(issues) > 50:
        console.print(f"  … and {len(issues) - 50} more")


@prompts_cli.command("import")
def import_prompts(
    path: Path = typer.Argument(..., help="A JSONL or CSV file."),
    split_seed: str = typer.Option("rlhf-studio", help="Salt of the split-by-end-user hash."),
    train_fraction: float = typer.Option(0.8), valid_fraction: float = typer.Option(0.1),
    max_per_end_user: int = typer.Option(200, help="0: no cap."),
    prefix_chars: int = typer.Option(60, help="Shared normalised prefix that makes a duplicate."),
    no_prefix_dedup: bool = typer.Option(False, "--no-prefix-dedup"),
    no_pii: bool = typer.Option(False, "--no-pii", help="Keep PII in the train split."),
    strict: bool = typer.Option(False, help="Any bad line aborts the whole import."),
) -> None:
    """Import prompts; prints accepted / merged / capped / rejected and each bad line."""
    from pydantic import ValidationError

    from app.console import fail
    from app.prompts.rules import ImportRules

    try:
        rules = ImportRules(
            split_seed=split_seed, train_fraction=train_fraction, valid_fraction=valid_fraction,
            max_per_end_user=max_per_end_user or None, prefix_chars=prefix_chars,
            dedup_prefix=not no_prefix_dedup, scrub_pii=not no_pii)
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"invalid rules: {'.'.join(map(str, first['loc']))}: {first['msg']}")
        return
    _import_file(path, rules, strict)


def _import_file(path: Path, rules: "ImportRules", strict: bool) -> None:
    """Import the file in one transaction with a progress bar; print the counts and each
    bad line (exit non-zero, nothing imported, when the import fails)."""
    from app.console import console, fail
    from app.db import session_scope
    from app.prompts import service as prompts

    data, total = read_lines(path)
    bar, total, label = progress_bar(total, "importing")
    try:
        with bar, session_scope() as db:
            task = bar.add_task(label, total=total)
            report = prompts.import_file(db=db, data=data, filename=path.name, rules=rules,
                                         strict=strict, progress=lambda: bar.advance(task))
    except prompts.ImportFailed as exc:
        print_issues(exc.report.issues)
        fail(str(exc))
        return
    except prompts.PromptError as exc:
        fail(str(exc))
        return
    console.print(f"accepted {report.accepted}, merged duplicates {report.merged}, "
                  f"capped {report.capped}, rejected {report.rejected}")
    print_issues(report.issues)


def register(root: typer.Typer) -> None:
    """Add `prompts` to the `rlhf-studio` command."""
    root.add_typer(prompts_cli, name="prompts")
