"""Researchers' pages and the labeler's skip/undo in a real browser at laptop and phone
widths: nothing overflows the page sideways, wide tables scroll inside their box."""

import re

import pytest
from sqlalchemy import select

from app.labeling.models import PromptFlag
from app.queue.models import Assignment, AssignmentState, TaskKind
from tests.e2e.conftest import LAPTOP, PHONE, shot
from tests.factories import make_demonstration, make_prompt, make_task, make_user, ranked_task

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]


def _no_sideways_scroll(page) -> None:  # type: ignore[no-untyped-def]
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], (page.url, width)


def test_research_pages_at_laptop_and_phone(committed_db, open_page):
    db = committed_db
    a, b = make_user(db, email="ann@example.com"), make_user(db, email="bob@example.com")
    task, _ = ranked_task(db, 6, [(a, [[0], [1, 2], [3], [4], [5]]),
                                  (b, [[5], [4], [3], [2], [1], [0]])])
    prompt = make_prompt(db, "Write a limerick about <b>cats</b>")
    make_demonstration(db, prompt, a, "There once was a cat " * 8)
    db.add(PromptFlag(prompt_id=prompt.id, user_id=b.id, reason="unclear", comment="Which cats?"))
    researcher = make_user(db, "researcher")
    db.commit()
    for label, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        page = open_page(researcher, viewport)
        for url, name in ((f"/tasks/{task.id}", "task-view"), ("/tasks", "tasks"),
                          ("/review", "review"), ("/review/flags", "flags"),
                          ("/agreement", "agreement"), (f"/tasks/{task.id}/gold", "gold"),
                          (f"/agreement/tasks?labeler={a.id}", "agreement-tasks")):
            page.goto(url)
            _no_sideways_scroll(page)
            shot(page, f"{name}-{label}")
        page.goto("/agreement")
        kappa = page.locator("#flag-kappa").evaluate(
            "t => [t.parentElement.scrollWidth, t.parentElement.clientWidth]")
        assert kappa[0] >= kappa[1]  # its own box scrolls when it has to
        page.goto("/no/such/page")
        assert page.locator("nav.nav a[href='/review']").count() == 1
        shot(page, f"not-found-{label}")


def test_skip_with_a_reason_then_undo(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    first = make_task(db, TaskKind.rank)
    first.priority = 5
    make_task(db, TaskKind.rank)
    db.commit()
    page = open_page(user)
    page.goto("/label/next?kind=rank")
    page.wait_for_function(f"document.getElementById('task').dataset.taskId == '{first.id}'")
    page.click("#skip")
    page.check("input[name=reason][value='Problem with the outputs']")
    page.fill("input[name=note]", "two are identical")
    shot(page, "skip-menu-laptop")
    page.click("#skip-confirm")
    page.wait_for_selector("#undo-skip")
    assert page.get_attribute("#task", "data-task-id") != str(first.id)
    db.expire_all()
    skipped = db.scalars(select(Assignment).where(Assignment.task_id == first.id)).one()
    assert skipped.state == AssignmentState.skipped
    assert skipped.skip_reason == "Problem with the outputs: two are identical"
    page.click("#undo-skip")
    page.wait_for_url(re.compile(rf"/label/a/{skipped.id}$"))
    assert page.get_attribute("#task", "data-live") == "1"
    page.goto("/label")
    assert page.locator("#leases li").count() == 2  # the undone one and the next one
    shot(page, "start-two-leases-laptop")
