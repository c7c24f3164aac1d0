"""`rlhf-studio simulate`: a pool of simulated labelers against a running deployment, and
`rlhf-studio simulate loop`: the whole feedback → training → new tasks loop, round by round."""

import asyncio
import signal
from pathlib import Path
from typing import Any

import typer

from simulation.judges import Judge
from simulation.labelers import KINDS
from simulation.pool import Pool, PoolSettings

simulate_cli = typer.Typer(
    help="Simulated labelers working through the real HTTP API.", no_args_is_help=False,
    invoke_without_command=True)

URL = typer.Option("http://127.0.0.1:8000", "--url", help="The deployment's base URL.")
ADMIN_TOKEN = typer.Option(
    None, "--admin-token", envvar="RLHF_ADMIN_TOKEN",
    help="An admin's API token: make the labelers' accounts over HTTP. Without it they are "
         "made through the app's services on the database RLHF_DATABASE_URL names, so run "
         "beside that database.")
JUDGE_HELP = ("The hidden preference: letter:X | word:W | length:N | keyword, or a reward "
              "model directory.")


def parse_kinds(kinds: str) -> tuple[str, ...]:
    """A comma-separated list of task kinds; '' or 'all' for whatever the queue serves."""
    from app.console import fail

    if kinds in ("", "all"):
        return ()
    out = tuple(k.strip() for k in kinds.split(",") if k.strip())
    unknown = [k for k in out if k not in KINDS]
    if unknown:
        fail(f"unknown task kind {', '.join(unknown)}: use {', '.join(KINDS)}")
    return out


def wait_until_up(url: str, seconds: float) -> None:
    """Wait for the deployment to answer /healthz (it may be starting beside us)."""
    import time

    import httpx

    from app.console import fail

    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=5)
            return
        except httpx.HTTPError as exc:
            if time.monotonic() > deadline:
                fail(f"no server answers at {url} ({type(exc).__name__}): start it with "
                     "`rlhf-studio up`, or give its address with --url")
            time.sleep(0.5)


def make_accounts(url: str, admin_token: str | None, n: int, role: str = "labeler") -> list:
    """The labelers' accounts (see simulation/accounts.py for the two ways)."""
    from app.console import fail
    from simulation import accounts

    try:
        if admin_token:
            return accounts.over_http(url, admin_token, n, role)
        return accounts.from_database(n, role)
    except accounts.SetupError as exc:
        fail(str(exc))
    except Exception as exc:  # the database is not there or not migrated
        if admin_token or "sqlalchemy" not in type(exc).__module__:
            raise
        fail(f"cannot make the labelers' accounts in the database ({exc}); run beside the "
             "deployment's database (RLHF_DATABASE_URL) or pass --admin-token")
    raise AssertionError("unreachable")


async def run_pool(pool: Pool, *, quiet: bool = False, revoke_tokens: bool = True) -> None:
    """Run the pool with a progress bar; Ctrl-C stops leasing and lets work in hand finish."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from app.console import err

    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, pool.stop)
        loop.add_signal_handler(signal.SIGTERM, pool.stop)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        pass
    pool.on_warning = lambda message: err.print(f"[yellow]warning:[/] {message}")
    s = pool.settings
    total = s.tasks if s.tasks is not None else s.seconds
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  disable=quiet, console=err, transient=False) as progress:
        bar = progress.add_task("starting", total=total)
        running = asyncio.ensure_future(pool.run(revoke_tokens=revoke_tokens))
        start = loop.time()
        while not running.done():
            t = pool.tally
            done = t.total if s.tasks is not None else loop.time() - start
            progress.update(bar, completed=done, description=(
                f"{len(pool.accounts)} labelers · submitted {t.total} · skipped {t.skipped}"
                f" · errors {sum(t.errors.values())}"))
            await asyncio.wait([running], timeout=0.5)
        await running


@simulate_cli.callback()
def simulate(
    ctx: typer.Context,
    url: str = URL,
    labelers: int = typer.Option(4, "--labelers", min=1, max=5000),
    seconds: float | None = typer.Option(None, "--seconds", min=0.1,
                                         help="Work this long (polling an empty queue)."),
    tasks: int | None = typer.Option(None, "--tasks", min=1,
                                     help="Stop after this many submissions in all."),
    kinds: str = typer.Option("", "--kinds", help=f"Comma-separated: {', '.join(KINDS)}; "
                              "default: whatever kind the queue serves next."),
    judge: str = typer.Option("letter:e", "--judge", help=JUDGE_HELP),
    agreement: float = typer.Option(0.73, "--agreement", min=0.51, max=0.99,
                                    help="Target pairwise agreement between labelers."),
    think: float = typer.Option(0.0, "--think", min=0.0, help="Mean seconds per task."),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
    admin_token: str | None = ADMIN_TOKEN,
    careless: float = typer.Option(0.0, "--careless", min=0.0, max=0.9,
                                   help="Share of labelers who answer at random."),
    adversarial: float = typer.Option(0.0, "--adversarial", min=0.0, max=0.9,
                                      help="Share of labelers who invert their judgement."),
    skip_rate: float = typer.Option(0.02, "--skip-rate", min=0.0, max=1.0),
    watch: bool = typer.Option(False, "--watch", help="Keep polling an empty queue until "
                               "Ctrl-C (a demo pool beside the app)."),
    receipts: bool = typer.Option(False, "--receipts", help="List every stored submission "
                                  "in the report (for invariant checks)."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Run N simulated labelers against URL until the time, the tasks or the queue run out
    (or, with --watch, until Ctrl-C); print a summary and write a JSON report."""
    if ctx.invoked_subcommand is not None:
        return
    hidden = _checked_options(seconds=seconds, tasks=tasks, careless=careless,
                              adversarial=adversarial, judge=judge)
    settings = PoolSettings(url=url.rstrip("/"), labelers=labelers, seconds=seconds,
                            tasks=tasks, kinds=parse_kinds(kinds), judge=judge,
                            agreement=agreement, think=think, skip_rate=skip_rate,
                            careless=careless, adversarial=adversarial, seed=seed, watch=watch)
    run_labelers(settings, hidden, admin_token=admin_token, quiet=quiet, receipts=receipts,
                 report=report)


def _checked_options(*, seconds: float | None, tasks: int | None, careless: float,
                     adversarial: float, judge: str) -> Judge:
    """Exit on options that contradict each other; the hidden preference --judge names."""
    from app.console import fail
    from simulation import judges

    if seconds is not None and tasks is not None:
        fail("give --seconds or --tasks, not both")
    if careless + adversarial >= 1:
        fail("--careless and --adversarial leave no honest labeler")
    try:
        return judges.make_judge(judge)
    except judges.JudgeError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


def run_labelers(settings: PoolSettings, hidden: Judge, *, admin_token: str | None,
                 quiet: bool, receipts: bool, report: Path | None) -> None:
    """Wait for the deployment, run the pool, print the summary and write the report."""
    from simulation import report as reporting

    wait_until_up(settings.url, 120.0 if settings.watch else 10.0)
    pool = Pool(settings, make_accounts(settings.url, admin_token, settings.labelers), hidden)
    asyncio.run(run_pool(pool, quiet=quiet))
    out = reporting.build(pool.tally, settings=settings.to_json(),
                          expected_agreement=pool.expected_agreement(), receipts=receipts)
    print_summary(out)
    if report is not None:
        reporting.write(out, report)


def print_summary(out: dict[str, Any]) -> None:
    """The report's headline figures as a table."""
    from rich.table import Table

    from app.console import console

    table = Table(title="simulated labelers", show_header=False)
    sub, agr = out["submitted"], out["agreement"]
    table.add_row("submitted", f"{sub['total']}  {sub['by_kind']}")
    table.add_row("per second", str(out["submits_per_s"]))
    table.add_row("skipped", str(out["skipped"]))
    table.add_row("errors", str(out["errors"] or "none"))
    for op, pct in out["latency_ms"].items():
        if pct.get("n"):
            table.add_row(f"{op} ms", f"p50 {pct['p50']}  p90 {pct['p90']}  p99 {pct['p99']}"
                                      f"  max {pct['max']}  (n {pct['n']})")
    if agr["pairwise"] is not None:
        table.add_row("agreement", f"{agr['pairwise']:.3f} over {agr['n_comparisons']} "
                      f"comparisons (honest {agr['honest_pairwise']:.3f}, expected "
                      f"{agr['expected']:.3f}, target {agr['target']})")
    console.print(table)
