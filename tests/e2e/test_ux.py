"""What a person meets on the researchers' pages in real Chromium, at laptop and phone
widths: rollback asks first, a refused form leaves the page at its own address, the phone
menu opens, job logs read as text, the tasks page keeps itself current."""

import re

import pytest

from app.auth.models import Role
from app.jobs import service as jobs
from app.queue.models import TaskKind
from app.registry import service as registry
from tests.e2e.conftest import LAPTOP, PHONE, shot
from tests.evaluation.factories import make_version
from tests.factories import finished, make_task, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]
WIDTHS = (("laptop", LAPTOP), ("phone", PHONE))


def test_rolling_back_the_active_policy_asks_first(committed_db, open_page):
    db = committed_db
    researcher = make_user(db, Role.researcher)
    sft = make_version(db, "sft", name="sft-r1")
    first = make_version(db, "policy", name="policy-r1", parent=sft)
    second = make_version(db, "policy", name="policy-r2", parent=sft)
    for v in (first, second):
        registry.promote(db=db, version_id=v.id, user_id=researcher.id)
    db.commit()
    for label, viewport in WIDTHS:
        page = open_page(researcher, viewport)
        url = f"/models/{second.id}" if label == "laptop" else "/models"
        page.goto(url)
        button = page.locator("#confirm-rollback-policy")
        assert not button.is_visible()  # one click only opens the question
        page.click("#rollback-policy summary")
        assert button.is_visible() and "policy-r1" in button.inner_text()
        assert "next generation jobs" in page.inner_text("#rollback-policy")
        db.expire_all()
        assert registry.alias_target(db=db, alias="policy:active").id == second.id
        shot(page, f"rollback-confirm-{label}")
        button.click()
        page.wait_for_url(re.compile(rf"/models/{first.id}$"))
        db.expire_all()
        assert registry.alias_target(db=db, alias="policy:active").id == first.id
        registry.promote(db=db, version_id=second.id, user_id=researcher.id)
        db.commit()


def test_a_refused_form_leaves_the_page_at_its_own_address(committed_db, open_page):
    researcher = make_user(committed_db, Role.researcher)
    committed_db.commit()
    posts: list[str] = []
    for label, viewport in WIDTHS:
        page = open_page(researcher, viewport)
        page.goto("/jobs")
        page.check("#round-form input[name=stages][value=sft]")
        page.click("#start-round")
        page.wait_for_selector(".flash-error")
        assert "No round started" in page.inner_text(".flash-error")
        assert page.url.endswith("/jobs"), page.url
        assert page.locator("#round-form input[name=stages][value=sft]").is_checked()
        shot(page, f"refused-round-{label}")
        posts.clear()
        page.on("request", lambda req: posts.append(req.url) if req.method == "POST" else None)
        page.reload()
        assert page.url.endswith("/jobs") and posts == []


def test_phone_menu_opens_and_leads_to_every_page(committed_db, open_page):
    researcher = make_user(committed_db, Role.researcher)
    committed_db.commit()
    page = open_page(researcher, LAPTOP)
    assert not page.locator("#menu-toggle").is_visible()
    assert page.locator("nav.nav a[href='/models']").is_visible()
    shot(page, "menu-laptop")
    page = open_page(researcher, PHONE)
    page.goto("/label")
    assert page.locator("#menu-toggle").is_visible()
    assert not page.locator("nav.nav a[href='/models']").is_visible()
    page.click("#menu-toggle")
    assert page.get_attribute("#menu-toggle", "aria-expanded") == "true"
    shot(page, "menu-phone-open")
    page.click("nav.nav a[href='/account']")  # the last link, once off-screen
    page.wait_for_url(re.compile(r"/account$"))


def test_a_job_log_reads_as_text(committed_db, open_page):
    db = committed_db
    researcher = make_user(db, Role.researcher)
    job = jobs.submit(db=db, kind="sft", config={})
    job.log_tail = ("Training on CPU\n\x1b[1mLoading\x1b[0m model\n"
                    + "".join(f"sft: {p:3d}%|{'█' * (p // 10):<10}| {p // 10}/10\x1b[A\n"
                              for p in range(10, 60, 10)) + "step 5 loss 1.25\n")
    db.commit()
    for label, viewport in WIDTHS:
        page = open_page(researcher, viewport)
        page.goto(f"/jobs/{job.id}")
        page.wait_for_timeout(2500)  # one live refresh of the log from the JSON API
        log = page.inner_text("#job-log")
        assert "[1m" not in log and "[A" not in log and log.count("sft:") == 1, log
        assert "50%" in log and page.inner_text("#job-device") == "CPU"
        shot(page, f"job-log-{label}")


def test_a_labeler_sees_each_submit_confirmed(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    tasks = [make_task(db, TaskKind.rate) for _ in range(3)]
    db.commit()
    for label, viewport in WIDTHS:
        page = open_page(user, viewport)
        page.goto("/label/next?kind=rate")
        task_id = page.get_attribute("#task", "data-task-id")
        cid = next(t.candidate_ids[0] for t in tasks if str(t.id) == task_id)
        page.click(f"#out-{cid} .likert-scale label:nth-child(6)")
        page.click("#submit")
        page.wait_for_function(f"document.getElementById('task')?.dataset.taskId != '{task_id}'")
        toast = page.locator("#submitted-toast")
        toast.wait_for()
        assert toast.inner_text() == f"Submitted ✓ Task {task_id} is saved."
        shot(page, f"submitted-toast-{label}")
        page.reload()  # said once, not on every later page
        assert page.locator("#submitted-toast").count() == 0


def test_the_tasks_page_keeps_itself_current(committed_db, open_page):
    db = committed_db
    researcher = make_user(db, Role.researcher)
    task = make_task(db, TaskKind.rate, overlap=2)
    db.commit()
    for label, viewport in WIDTHS:
        page = open_page(researcher, viewport)
        page.goto("/tasks")
        before = int(page.inner_text("#submitted-recent"))
        finished(db, task, make_user(db))  # a submission while the page is open
        db.commit()
        page.wait_for_function(
            f"document.getElementById('submitted-recent').textContent == '{before + 1}'",
            timeout=12_000)
        assert "Live: updated" in page.inner_text("#live-status")
        assert int(page.inner_text("#active-labelers")) >= 1
        shot(page, f"tasks-live-{label}")
