"""The pool against a live server on the test database: what it reports is what is stored."""

import asyncio
import json
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.auth.models import ApiToken, User
from app.labeling.models import Demonstration, Ranking, Rating, WrittenPrompt
from app.prompts.models import PromptKind
from app.queue import service as queue
from app.queue.models import Assignment, AssignmentState, Task
from simulation import accounts
from simulation.judges import make_judge
from simulation.pool import Pool, PoolSettings
from tests.factories import make_candidates, make_prompt

ROWS = {"demonstrate": Demonstration, "rank": Ranking, "write_prompt": WrittenPrompt}


def _in_thread(coro):  # type: ignore[no-untyped-def]
    """asyncio.run on a thread of its own (another test may leave a loop on this one)."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(coro)))
    thread.start()
    thread.join(timeout=120)
    return out[0]


def _seed(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Work of every kind; returns the labels it asks for, by kind."""
    for _ in range(6):
        prompt = make_prompt(db)
        ids = [c.id for c in make_candidates(db, prompt, 4)]
        queue.create_rank_task(db=db, prompt_id=prompt.id, candidate_ids=ids, overlap=2)
    rate = [make_candidates(db, make_prompt(db), 1)[0].id for _ in range(4)]
    queue.create_rate_tasks(db=db, candidate_ids=rate, overlap=2)
    queue.create_demonstrate_tasks(db=db, prompt_ids=[make_prompt(db).id for _ in range(3)],
                                   overlap=1)
    queue.create_write_prompt_tasks(db=db, prompt_kind=PromptKind.plain, count=2)
    queue.create_write_prompt_tasks(db=db, prompt_kind=PromptKind.few_shot, count=1)
    db.commit()
    return {"rank": 12, "rate": 8, "demonstrate": 3, "write_prompt": 3}


def _stored(db, emails: set[str]) -> Counter[str]:  # type: ignore[no-untyped-def]
    users = select(User.id).where(User.email.in_(emails))
    out: Counter[str] = Counter()
    for kind, row in ROWS.items():
        out[kind] = db.scalar(select(func.count()).select_from(row)
                              .where(row.user_id.in_(users))) or 0
    out["rate"] = db.scalar(select(func.count()).select_from(Rating).where(
        Rating.user_id.in_(users), Rating.ranking_id.is_(None))) or 0
    return +out


def test_pool_drains_every_kind_and_reports_what_is_stored(committed_db, live_server):
    db = committed_db
    wanted = _seed(db)
    accts = accounts.from_database(3)
    settings = PoolSettings(url=live_server, labelers=3, skip_rate=0.0, replay_rate=1.0)
    pool = Pool(settings, accts, make_judge("letter:e"))
    tally = _in_thread(pool.run())

    assert dict(tally.submitted) == wanted
    assert tally.errors == Counter() and tally.replays == sum(wanted.values())
    assert tally.replay_mismatches == 0  # every replayed key got the original answer
    db.expire_all()
    assert _stored(db, {a.email for a in accts}) == Counter(wanted)
    for receipt in tally.receipts:  # every 2xx the client saw is a stored row
        row = ROWS.get(receipt.kind, Rating)
        assert db.get(row, receipt.id).task_id == receipt.task_id
    assert {t.done_labels == t.required_labels for t in db.scalars(select(Task))} == {True}
    assert db.scalar(select(func.count()).select_from(Assignment).where(
        Assignment.state != AssignmentState.submitted)) == 0
    # The run's tokens are revoked when it ends.
    assert db.scalar(select(func.count()).select_from(ApiToken).where(
        ApiToken.revoked_at.is_(None))) == 0
    assert len(tally.rankings) == 6 and all(len(r) == 2 for r in tally.rankings.values())


def test_pool_stops_at_the_task_budget_and_counts_skips(committed_db, live_server):
    db = committed_db
    for _ in range(8):
        queue.create_demonstrate_tasks(db=db, prompt_ids=[make_prompt(db).id], overlap=1)
    db.commit()
    settings = PoolSettings(url=live_server, labelers=3, tasks=5, skip_rate=0.0,
                            kinds=("demonstrate",), seed=4)
    tally = _in_thread(Pool(settings, accounts.from_database(3), make_judge("length:6")).run())
    assert tally.total == 5 and tally.skipped == 0
    # Labelers who skip everything: each skips each of the 3 tasks left once (skips stick).
    skipping = PoolSettings(url=live_server, labelers=3, tasks=5, skip_rate=1.0,
                            kinds=("demonstrate",), seed=4)
    tally = _in_thread(Pool(skipping, accounts.from_database(3), make_judge("length:6")).run())
    assert tally.total == 0 and tally.skipped == 3 * 3
    db.expire_all()
    states = Counter(db.scalars(select(Assignment.state)))
    assert states[AssignmentState.submitted] == 5 and states[AssignmentState.skipped] == 9


def test_cli_writes_the_report_and_reuses_accounts(committed_db, live_server, tmp_path):
    from app.cli import root

    db = committed_db
    for _ in range(4):
        prompt = make_prompt(db)
        ids = [c.id for c in make_candidates(db, prompt, 5)]
        queue.create_rank_task(db=db, prompt_id=prompt.id, candidate_ids=ids, overlap=2)
    db.commit()
    out = tmp_path / "report.json"
    args = ["simulate", "--url", live_server, "--labelers", "2", "--kinds", "rank",
            "--skip-rate", "0", "--report", str(out), "--receipts", "--quiet"]
    result = _in_thread(_invoke(root, args))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["errors"] == {}, report["error_samples"]
    assert report["submitted"] == {"total": 8, "by_kind": {"rank": 8}}
    assert report["agreement"]["n_comparisons"] == 4 * 10
    assert {r["kind"] for r in report["receipts"]} == {"rank"} and len(report["receipts"]) == 8
    assert report["server_errors"] == 0 and report["latency_ms"]["submit"]["n"] == 8
    # A second run reuses the two accounts (nothing left for them to do).
    result = _in_thread(_invoke(root, args))
    assert result.exit_code == 0, result.output
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(User)) == 2
    assert json.loads(out.read_text())["submitted"]["total"] == 0


async def _invoke(root, args):  # type: ignore[no-untyped-def]
    # The CLI runs its own event loop: hand it a thread without one.
    return await asyncio.to_thread(CliRunner().invoke, root, args)


def test_cli_refuses_bad_options_before_doing_anything(committed_db):
    from app.cli import root

    runner = CliRunner()
    for args, message in (
        (["--judge", "colour:red"], "unknown judge"),
        (["--kinds", "rank,dance"], "unknown task kind dance"),
        (["--seconds", "5", "--tasks", "3"], "not both"),
        (["--careless", "0.5", "--adversarial", "0.5"], "no honest labeler"),
    ):
        result = runner.invoke(root, ["simulate", "--url", "http://127.0.0.1:9", *args])
        assert result.exit_code != 0 and message in result.output, result.output
    assert committed_db.scalar(select(func.count()).select_from(User)) == 0


def test_loop_cli_refuses_bad_options_before_doing_anything(committed_db):
    from app.cli import root

    runner = CliRunner()
    for args, message in (
        (["--judge", "colour:red"], "unknown judge"),
        (["--config", "{broken"], "Expecting"),
        (["--config", "[1, 2]"], "a JSON object of stages"),
        (["--if-better"], "needs --evaluate"),
        (["--on-hold", "ignore"], "--on-hold is dismiss or promote"),
    ):
        result = runner.invoke(root, ["simulate", "loop", "--url", "http://127.0.0.1:9", *args])
        assert result.exit_code != 0 and message in result.output, result.output
    assert committed_db.scalar(select(func.count()).select_from(User)) == 0


def test_accounts_over_http_with_an_admin_token(committed_db, live_server):
    import httpx

    from app.auth import service as auth
    from tests.factories import make_user

    admin = make_user(committed_db, "admin")
    _, admin_token = auth.create_token(db=committed_db, user=admin)
    committed_db.commit()
    first = accounts.over_http(live_server, admin_token, 2)
    again = accounts.over_http(live_server, admin_token, 2)  # existing users: reset and reuse
    for account in first + again:
        me = httpx.get(f"{live_server}/api/v1/me",
                       headers={"Authorization": f"Bearer {account.token}"})
        assert me.json()["email"] == account.email and me.json()["role"] == "labeler"
    assert [a.email for a in first] == [a.email for a in again]
    labeler = make_user(committed_db)
    _, labeler_token = auth.create_token(db=committed_db, user=labeler)
    committed_db.commit()
    try:
        accounts.over_http(live_server, labeler_token, 1)
    except accounts.SetupError as exc:
        assert "403" in str(exc)
    else:
        raise AssertionError("a labeler's token made accounts")


@pytest.mark.slow  # a live deployment for seconds
def test_up_with_a_pool_leaves_no_process_behind_on_sigterm(committed_db, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.e2e.conftest import REPO, _free_port

    port = _free_port()
    env = dict(os.environ, RLHF_REDIS_URL="", RLHF_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port),
                             "--no-access-log", "--simulate", "1"], cwd=REPO, env=env)
    children: list[int] = []
    try:
        for _ in range(300):  # the workers and the pool are started before the web app
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                children = [int(c) for c in f.read().split()]
            if len(children) == 3:
                break
            time.sleep(0.1)
        assert len(children) == 3
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        for pid in children:  # the workers and the pool were stopped with it
            assert not os.path.exists(f"/proc/{pid}") or \
                open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow  # a live deployment for seconds
def test_a_labeler_who_thinks_a_while_keeps_its_lease_alive(committed_db, live_server):
    db = committed_db
    queue.create_demonstrate_tasks(db=db, prompt_ids=[make_prompt(db).id for _ in range(3)],
                                   overlap=1)
    db.commit()
    settings = PoolSettings(url=live_server, labelers=1, think=2.0, skip_rate=0.0, seed=1)
    tally = _in_thread(Pool(settings, accounts.from_database(1), make_judge("keyword")).run())
    assert tally.total == 3 and not tally.errors
    assert tally.heartbeats >= 1 and len(tally.latency["heartbeat"]) == tally.heartbeats


def test_pool_with_no_kinds_also_judges_compare_tasks(committed_db, live_server):
    """'Any task' leaves compare tasks out; a simulated labeler asks for them too, so a
    round's campaign gets judged by `make run SIMULATE=N` and `simulate loop`."""
    from app.evaluation.models import Evaluation
    from tests.evaluation.factories import campaign, make_prompts, make_version

    db = committed_db
    make_prompts(db, 4)
    sft = make_version(db, "sft")
    ev = campaign(db, None, candidates=[make_version(db, "policy", parent=sft)], baseline=sft,
                  n=4, judges="all")
    db.commit()
    pool = Pool(PoolSettings(url=live_server, labelers=2, skip_rate=0.0),
                accounts.from_database(2), make_judge("letter:e"))
    tally = _in_thread(pool.run())
    assert tally.submitted["compare"] == 4 and tally.errors == Counter()
    db.rollback()  # a fresh snapshot: the judgments were committed by the server
    assert db.scalar(select(Evaluation.state).where(Evaluation.id == ev.id)) == "complete"
