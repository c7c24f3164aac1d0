"""The `rlhf-studio` command. Domains add their own subcommands through `register(root)`."""

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

import typer

from app import domain_parts
from app.config import get_settings
from app.console import console, err, fail

PLUGINS = "rlhf_studio.cli"  # entry points whose `register(root)` adds commands

root = typer.Typer(help="RLHF Studio: human feedback in, aligned models out.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
users_cli = typer.Typer(help="User accounts.", no_args_is_help=True)
tokens_cli = typer.Typer(help="API bearer tokens for scripts.", no_args_is_help=True)
root.add_typer(db_cli, name="db")
root.add_typer(users_cli, name="users")
root.add_typer(tokens_cli, name="tokens")


# --- db -------------------------------------------------------------------------------


@db_cli.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Migrate the database up to the newest schema (or REVISION)."""
    from alembic import command

    from app.db import alembic_config

    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(), revision)
    console.print(f"database at [bold]{revision}[/]: {_db_label()}")


@db_cli.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="e.g. base, or -1")) -> None:
    """Migrate the database down to REVISION."""
    from alembic import command

    from app.db import alembic_config

    command.downgrade(alembic_config(), revision)
    console.print(f"database at [bold]{revision}[/]")


@db_cli.command("current")
def db_current() -> None:
    """Show the database's current revision."""
    from alembic import command

    from app.db import alembic_config

    command.current(alembic_config(), verbose=False)


def _db_label() -> str:
    url = get_settings().effective_database_url
    return url.split("@")[-1] if "@" in url else url


# --- users and tokens -----------------------------------------------------------------


@users_cli.command("create")
def users_create(
    email: str = typer.Option(...), password: str = typer.Option(...),
    role: str = typer.Option(..., help="labeler | researcher | admin"),
    name: str = typer.Option(""), held_out: bool = typer.Option(False, "--held-out"),
) -> None:
    """Create a user."""
    from app.auth import service
    from app.auth.models import Role
    from app.db import session_scope

    if role not in {r.value for r in Role}:
        fail(f"unknown role {role!r}: use labeler, researcher or admin")
    try:
        with session_scope() as db:
            user = service.create_user(db=db, email=email, password=password, role=Role(role),
                                       name=name, held_out=held_out)
            console.print(f"created user {user.id}: {user.email} ({user.role.value})")
    except service.AuthError as exc:
        fail(str(exc))


@users_cli.command("list")
def users_list() -> None:
    """List users."""
    from app.auth import service
    from app.db import session_scope

    with session_scope() as db:
        for u in service.list_users(db=db):
            flags = ("" if u.active else " inactive") + (" held-out" if u.held_out else "")
            console.print(f"{u.id}\t{u.email}\t{u.role.value}{flags}")


@contextmanager
def _user_work(email: str) -> Iterator[tuple[Any, Any]]:
    """One unit of work on the user with this email; no such user, or a refused change, is a
    clean CLI error and rolls back."""
    from app.auth import service
    from app.db import session_scope

    try:
        with session_scope() as db:
            user = service.get_user_by_email(db=db, email=email)
            if user is None:
                fail(f"no user with email {email}")
            yield db, user
    except service.AuthError as exc:
        fail(str(exc))


@users_cli.command("set-password")
def users_set_password(
    email: str = typer.Option(...), password: str = typer.Option(...),
    keep_tokens: bool = typer.Option(False, help="Keep the user's API tokens working."),
) -> None:
    """Reset a user's password: ends their sessions and revokes their API tokens."""
    from app.auth import service

    with _user_work(email) as (db, user):
        service.set_password(db=db, user=user, password=password, keep_tokens=keep_tokens)
    kept = "kept" if keep_tokens else "revoked"
    console.print(f"password of {email} changed; sessions ended, API tokens {kept}")


@tokens_cli.command("create")
def tokens_create(email: str = typer.Option(...), name: str = typer.Option("")) -> None:
    """Create an API token for a user and print it (once)."""
    from app.auth import service

    with _user_work(email) as (db, user):
        _, clear = service.create_token(db=db, user=user, name=name)
    print(clear)


@tokens_cli.command("revoke")
def tokens_revoke(token_id: int = typer.Argument(...), email: str = typer.Option(...)) -> None:
    """Revoke a user's API token by id."""
    from app.auth import service

    with _user_work(email) as (db, user):
        service.revoke_token(db=db, user=user, token_id=token_id)
    console.print(f"token {token_id} revoked")


# --- running --------------------------------------------------------------------------


# The simulated labelers of `up --simulate N` take 1 s a task on average (uniform on 0-2 s):
# four of them label about 4 tasks a second, so the demo's rankings (about 1150, served
# first: the demo made them first) and SFT's first 8 demonstrations are in after about five
# minutes, and the first round starts then with every ranking. At 8 s a task it took 19
# minutes for half as many.
SIMULATE_THINK_S = 1.0


@root.command("up")
def up(
    host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000),
    workers: bool = typer.Option(True, help="Also start a Celery worker with beat."),
    web_workers: int = typer.Option(1, help="uvicorn processes (one per core on PostgreSQL)."),
    access_log: bool = typer.Option(True, help="Log every request."),
    simulate: int = typer.Option(0, "--simulate", min=0, help="Also run N simulated "
                                 "labelers on the queue (rlhf-studio simulate --watch)."),
    think: float = typer.Option(SIMULATE_THINK_S, "--think", min=0.0,
                                help="The simulated labelers' mean seconds per task."),
    schedule: bool = typer.Option(False, "--schedule", help="Rounds start by themselves: "
                                  "after every ~700 new comparisons, judged in a blind "
                                  "campaign, promoted if people prefer the new policy, "
                                  "then fresh rank tasks (the schedule on /jobs)."),
    worker_log_level: str = typer.Option(
        "WARNING", help="The workers' log level; at WARNING (the default) they print no banner."),
) -> None:
    """Run the web app, a Celery worker and beat (embedded broker unless RLHF_REDIS_URL)."""
    import uvicorn

    _check_app()
    if schedule:
        _schedule_rounds()
    children = _start_workers(worker_log_level) if workers else []
    if simulate:
        children.append(_start_simulation(host, port, simulate, think))
    # uvicorn re-raises the SIGTERM it shut down on; as SystemExit it runs the cleanup below
    # (with the default handler the process died there and left its children running).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _welcome(host, port)  # last, so the logins and the address do not scroll away
    if simulate or schedule:
        threading.Thread(target=_print_status, daemon=True, name="status-line").start()
    try:
        # Keep-alive above any proxy's idle timeout (nginx 60 s, cloud load balancers
        # 60 s): a proxy then never reuses a connection uvicorn is closing (502s).
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port,
                    workers=web_workers, access_log=access_log,
                    timeout_keep_alive=get_settings().keep_alive_s)
    finally:
        _stop(children)


def _check_app() -> None:
    """Build the app once, so that an unmigrated database fails fast, with the fix."""
    from app.main import UnmigratedDatabase, create_app

    try:
        create_app()
    except UnmigratedDatabase as exc:
        fail(str(exc))


def _start_workers(log_level: str) -> list[subprocess.Popen[bytes]]:
    """A Celery worker with beat on the default queue, and one for the gpu queue."""
    # Training holds its worker for minutes: the gpu queue gets a worker of its own
    # (one job at a time), so exports and the beat's reaper never wait behind it.
    # --quiet (no banner) is an option of celery itself, not of its worker command.
    quiet = ["--quiet"] if log_level.upper() != "INFO" else []
    celery = [sys.executable, "-m", "celery", "-A", "app.worker", *quiet, "worker",
              "--without-mingle", "--without-gossip", "--loglevel", log_level]
    return [
        subprocess.Popen([*celery, "--beat", "-Q", "default", "--concurrency", "2",
                          "-n", "default@%h"]),
        subprocess.Popen([*celery, "-Q", "gpu", "--concurrency", "1", "-n", "gpu@%h"]),
    ]


def _start_simulation(host: str, port: int, labelers: int,
                      think: float) -> subprocess.Popen[bytes]:
    """Simulated labelers working the queue of the app at host:port until it stops."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "simulate", "--url", f"http://{local}:{port}",
         "--labelers", str(labelers), "--think", str(think), "--watch", "--quiet"],
    )


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child, then wait up to 15 s each before killing it."""
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


# A round every ~700 new comparisons: the demo's rankings start the first one, and the 64
# fresh rank tasks of K = 4 with overlap 2 that each round samples (768) start the next.
SCHEDULE_COMPARISONS = 700
SCHEDULE_GENERATE = {"k": 4, "n_prompts": 64, "overlap": 2}
# Each round is judged in a blind campaign by whoever labels (the demo has no held-out
# labelers) and promoted only if people prefer it.
SCHEDULE_EVALUATE = {"overlap": 1, "judges": "all"}
STATUS_EVERY_S = 10.0


def _schedule_rounds() -> None:
    """Turn the schedule on so that rounds start by themselves (`up --schedule`)."""
    from app.db import session_scope
    from app.rounds import schedule

    with session_scope() as db:
        schedule.update_schedule(db=db, user=None, enabled=True, every_hours=None,
                                 min_new_comparisons=SCHEDULE_COMPARISONS,
                                 min_new_demonstrations=None, promote="if_better",
                                 evaluate=dict(SCHEDULE_EVALUATE),
                                 generate=dict(SCHEDULE_GENERATE))
    console.print(f"Rounds start by themselves after every {SCHEDULE_COMPARISONS} "
                  "new comparisons (change or stop it on /jobs).")


def _print_status() -> None:
    """One line every few seconds: labels done, the round in progress, the active policy."""
    from app.rounds.status import status_line

    while True:
        time.sleep(STATUS_EVERY_S)
        try:
            console.print(status_line(), highlight=False)
        except Exception as exc:  # noqa: BLE001 - a status line must never stop the server
            console.print(f"[dim](status unavailable: {type(exc).__name__})[/]")


def _welcome(host: str, port: int) -> None:
    """The address to open and, on a demo database, the logins with the one to try first."""
    creds_file = get_settings().data_dir / "demo-credentials.txt"
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print()
    if creds_file.exists():
        console.print("[bold]Demo logins[/]:")
        console.print(creds_file.read_text().rstrip())
        console.print("Try [bold]labeler@example.com[/] first (labels the sample tasks); then "
                      "researcher@ (sees the data) and admin@ (manages users).")
    console.print(f"[bold]RLHF Studio[/] on [bold]http://{shown}:{port}[/] (Ctrl-C stops it)")
    console.print()


@root.command("demo")
def demo() -> None:
    """Seed an empty database with one user per role and sample prompts; print the logins."""
    from app.demo import seed

    creds_file = get_settings().data_dir / "demo-credentials.txt"
    created = seed(creds_file=creds_file)
    if not creds_file.exists():
        console.print("The database already has users; no demo accounts were created.")
        return
    console.print("[bold]Demo logins[/] (also in " + str(creds_file) + "):")
    console.print(creds_file.read_text())
    if created:
        console.print(f"seeded {created} sample prompts")


def _register_domains() -> None:
    from app.wiring import wire

    wire()
    for register in domain_parts("cli", ("prompts", "queue", "labeling", "agreement",
                                         "exports", "rounds", "registry", "evaluation"),
                                 "register"):
        register(root)
    for plugin in entry_points(group=PLUGINS):  # e.g. `simulate`, from the simulation package
        try:
            plugin.load()(root)
        except (ImportError, AttributeError) as exc:  # a broken plugin leaves the rest usable
            err.print(f"[yellow]warning:[/] the {plugin.name!r} commands are unavailable: {exc}")


_register_domains()


def main() -> None:
    """Entry point of the `rlhf-studio` script."""
    root()


__all__ = ["fail", "main", "root", "console"]


if __name__ == "__main__":
    main()
