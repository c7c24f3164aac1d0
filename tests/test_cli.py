"""The rlhf-studio command: users, tokens and clean errors."""

from sqlalchemy import select
from typer.testing import CliRunner

from app.auth import service as auth
from app.auth.models import ApiToken, User
from app.cli import root

runner = CliRunner()


def test_users_create_then_tokens_create_prints_a_working_token(committed_db):
    out = runner.invoke(root, ["users", "create", "--email", "Ada@Example.com",
                               "--password", "long enough pw", "--role", "researcher"])
    assert out.exit_code == 0, out.output
    user = committed_db.scalar(select(User).where(User.email == "ada@example.com"))
    assert user is not None and user.role.value == "researcher"
    out = runner.invoke(root, ["tokens", "create", "--email", "ada@example.com"])
    assert out.exit_code == 0, out.output
    token = out.output.strip()
    assert token.startswith("rlhf_")
    assert committed_db.scalar(select(ApiToken.token_hash)) != token
    assert auth.user_for_token(db=committed_db, token=token).id == user.id


def test_users_create_refuses_bad_role_and_duplicate(committed_db):
    bad = runner.invoke(root, ["users", "create", "--email", "x@example.com",
                               "--password", "long enough pw", "--role", "boss"])
    assert bad.exit_code == 1 and "unknown role" in bad.output
    args = ["users", "create", "--email", "x@example.com", "--password", "long enough pw",
            "--role", "labeler"]
    assert runner.invoke(root, args).exit_code == 0
    again = runner.invoke(root, args)
    assert again.exit_code == 1 and "already exists" in again.output
    assert len(committed_db.scalars(select(User)).all()) == 1


def test_tokens_create_for_unknown_user_fails(committed_db):
    out = runner.invoke(root, ["tokens", "create", "--email", "ghost@example.com"])
    assert out.exit_code == 1 and "no user" in out.output


def test_up_quiets_the_worker_and_prints_logins_and_address_last(committed_db, monkeypatch):
    import subprocess

    import uvicorn

    from app.config import get_settings

    creds = get_settings().data_dir / "demo-credentials.txt"
    creds.parent.mkdir(parents=True, exist_ok=True)
    creds.write_text("labeler     labeler@example.com        pw123\n")
    started: list[list[str]] = []

    class FakeProcess:
        def __init__(self, args, **_):  # type: ignore[no-untyped-def]
            started.append(list(args))

        def send_signal(self, _sig):  # type: ignore[no-untyped-def]
            pass

        def wait(self, timeout=None):  # type: ignore[no-untyped-def]
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: print("UVICORN STARTED"))
    try:
        out = runner.invoke(root, ["up", "--host", "0.0.0.0", "--port", "8123"])
    finally:
        creds.unlink()
    assert out.exit_code == 0, out.output
    worker = started[0]
    assert "--quiet" in worker and worker[worker.index("--loglevel") + 1] == "WARNING"
    monkeypatch.undo()  # the real Popen again
    # Celery itself accepts each worker command line (an unknown option makes the worker exit
    # at once, and `up` would serve with no worker at all).
    for args in (a for a in started if "celery" in a):
        check = subprocess.run([*args, "--help"], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, (args, check.stderr[-500:])
    before_server = out.output.split("UVICORN STARTED")[0].rstrip().splitlines()
    assert before_server[-1].startswith("RLHF Studio on http://127.0.0.1:8123")
    assert "Try labeler@example.com first" in out.output
    assert "labeler@example.com        pw123" in out.output
