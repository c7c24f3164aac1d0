"""The loop in real Chromium: a researcher starts a round from /jobs, a real Celery worker
(through Redis) trains SFT → RM → PPO on the tiny model, the job pages show each stage
succeed with its charts drawn, and the researcher promotes the policy on its model page."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.auth.models import Role
from app.jobs.models import Job
from app.registry import service as registry
from app.registry.models import ModelVersion
from app.rounds.models import Round
from tests.e2e.conftest import ARTIFACTS, LAPTOP, PHONE, REPO, serve, shot
from tests.factories import make_user
from tests.jobs.conftest import tiny_base  # noqa: F401 - the tiny model, built once
from tests.jobs.loop import SMALL, label_everything, labeler_token, seed_tasks

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres_only]

REDIS_URL = os.environ.get("RLHF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ENV = {**os.environ, "RLHF_REDIS_URL": REDIS_URL}
STAGE_TIMEOUT_MS = 150_000


@pytest.fixture(scope="module")
def live_server(engine) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on a free port, sending jobs through the test Redis (as the worker reads)."""
    with serve(redis_url=REDIS_URL) as base:
        yield base


@pytest.fixture
def worker(tiny_base) -> Iterator[subprocess.Popen[bytes]]:  # type: ignore[no-untyped-def]  # noqa: F811
    """A real Celery worker on both queues, through Redis; its output goes to artifacts."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "loop-worker.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "app.worker", "worker", "--pool", "solo",
         "-Q", "default,gpu", "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_ended(page, what: str) -> str:  # type: ignore[no-untyped-def]
    """Wait on a job page until its live badge says it ended; returns the state."""
    page.wait_for_function(
        "['succeeded', 'failed', 'cancelled'].includes("
        "document.getElementById('job-state').textContent.trim())",
        timeout=STAGE_TIMEOUT_MS)
    page.wait_for_load_state("load")  # the page reloads itself once the job has ended
    state = page.locator("#job-state").inner_text().strip()
    assert state == "succeeded", f"{what}: {state}: {page.locator('#job-error').inner_text()}"
    return state


def _chart_points(page, chart_id: str) -> int:  # type: ignore[no-untyped-def]
    """The number of points the Chart.js chart on canvas #chart-<id> holds."""
    try:
        page.wait_for_selector(f"canvas#chart-{chart_id}", state="attached", timeout=10_000)
    except Exception as exc:
        keys = page.evaluate("""() => fetch('/api/v1/jobs/' + JSON.parse(
            document.getElementById('job-data').textContent).id + '/metrics')
            .then(r => r.json()).then(m => Object.keys(m.series))""")
        raise AssertionError(f"no chart {chart_id}; metric keys {keys}") from exc
    return page.evaluate(
        """id => {
            const chart = Chart.getChart(document.getElementById('chart-' + id));
            return chart ? chart.data.datasets.reduce((n, d) => n + d.data.length, 0) : 0;
        }""", chart_id)


def test_researcher_runs_a_round_watches_it_and_promotes_the_policy(
        open_page, committed_db, live_server, worker):
    db = committed_db
    seed_tasks(db)
    with httpx.Client(base_url=live_server, timeout=30) as api:
        label_everything(api, labeler_token(db))
    researcher = make_user(db, Role.researcher)
    db.commit()

    page = open_page(researcher)
    page.goto("/jobs")
    for stage in ("sft", "rm", "ppo"):
        assert page.locator(f'#round-form input[name=stages][value="{stage}"]').is_checked()
    page.click("#round-form details summary")
    page.fill("textarea[name=advanced]", json.dumps(SMALL))
    page.click("#start-round")
    page.wait_for_selector(".flash-success")
    assert "queued" in page.locator(".flash-success").inner_text()
    assert page.locator("#trigger-disabled").is_visible()  # one round at a time
    shot(page, "loop-jobs-1280")

    rnd = db.scalars(select(Round)).one()
    jobs = {j.kind: j.id for j in db.scalars(select(Job).where(Job.round_id == rnd.id))}
    assert set(jobs) == {"export", "sft", "rm", "ppo"}
    # The list follows the round by itself: the export's badge turns succeeded.
    page.wait_for_selector(f"tr[data-job-id='{jobs['export']}'][data-state=succeeded]",
                           timeout=STAGE_TIMEOUT_MS)

    # SFT: watched live from its page; train and validation loss drawn.
    page.goto(f"/jobs/{jobs['sft']}")
    _wait_ended(page, "sft")
    assert _chart_points(page, "loss") > 0
    # The reward model: loss and accuracy.
    page.goto(f"/jobs/{jobs['rm']}")
    _wait_ended(page, "rm")
    assert _chart_points(page, "loss") > 0 and _chart_points(page, "accuracy") > 0
    # PPO: reward, KL to SFT, entropy, held-out LM loss and the reward-vs-KL scatter.
    page.goto(f"/jobs/{jobs['ppo']}")
    _wait_ended(page, "ppo")
    for chart in ("reward", "kl", "entropy", "heldout", "goodhart"):
        assert _chart_points(page, chart) > 0, chart
    assert "ppo-job" in page.locator("#job-log").inner_text()  # the log tail, escaped text
    shot(page, "loop-ppo-job-1280")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)  # let the charts resize
    shot(page, "loop-ppo-job-390")
    page.set_viewport_size(LAPTOP)

    # The round has ended; the list says so and offers the trigger again.
    page.goto("/jobs")
    page.wait_for_selector(f"#round-{rnd.id}[data-state=succeeded]")
    assert page.locator("#trigger-disabled").count() == 0

    # Promote the policy from its model page (a two-step confirm, no dialog).
    page.goto(f"/jobs/{jobs['ppo']}")
    page.click("#job-version")
    policy = db.scalars(select(ModelVersion).where(ModelVersion.kind == "policy")).one()
    page.wait_for_url(f"**/models/{policy.id}")
    assert "sft" in page.locator("#lineage").inner_text()
    assert page.locator("#lineage-rm").inner_text().startswith("rm-")  # SFT → RM → policy
    page.click("#promote summary")
    page.click("#confirm-promote")
    page.wait_for_selector(".flash-success")
    assert "is now policy:active" in page.locator(".flash-success").inner_text()
    db.expire_all()
    assert registry.alias_target(db=db, alias="policy:active").id == policy.id
    shot(page, "loop-model-1280")
    page.set_viewport_size(PHONE)
    shot(page, "loop-model-390")
    page.set_viewport_size(LAPTOP)
    page.goto("/models")
    assert "policy:active" in page.locator(f"tr[data-version-id='{policy.id}']").inner_text()
    shot(page, "loop-models-1280")
    page.goto("/jobs")
    page.set_viewport_size(PHONE)
    shot(page, "loop-jobs-390")
    assert Path(ARTIFACTS / "loop-ppo-job-390.png").exists()
