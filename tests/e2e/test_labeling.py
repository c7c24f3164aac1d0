"""The labeling screens in real headless Chromium against a live server."""

import re

import pytest
from sqlalchemy import func, select

from app.labeling.models import Demonstration, Draft, Ranking, Rating
from app.queue.models import TaskKind
from tests.e2e.conftest import LAPTOP, PHONE, shot
from tests.factories import lease, make_task, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]


def _rate_all(page, likerts: dict[int, int]) -> None:  # type: ignore[no-untyped-def]
    for cid, value in likerts.items():
        page.click(f"#out-{cid} .likert-scale label:nth-child({value})")


def _ids(page, selector: str) -> list[int]:  # type: ignore[no-untyped-def]
    found = page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.cid)")
    return [int(x) for x in found]


def _pool_order(page) -> list[int]:  # type: ignore[no-untyped-def]
    return _ids(page, "#pool .chip")


def _ranked_order(page) -> list[int]:  # type: ignore[no-untyped-def]
    return _ids(page, "#ranked .chip")


def _drag(page, source, target_x: float, target_y: float) -> None:  # type: ignore[no-untyped-def]
    box = source.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + 8, steps=3)
    page.mouse.move(target_x, target_y, steps=12)
    # SortableJS's fallback drag reacts on a 50 ms timer: hold still over the target first.
    page.wait_for_timeout(120)
    page.mouse.move(target_x + 2, target_y, steps=2)
    page.wait_for_timeout(120)
    page.mouse.up()
    page.wait_for_timeout(250)  # let the drop animation finish, as a person would


def _drag_to_end(page, cid: int) -> None:  # type: ignore[no-untyped-def]
    """Drag an unplaced output to the end of the ranking with the mouse."""
    chip = page.locator(f'#pool .chip[data-cid="{cid}"]')
    ranked = page.locator("#ranked").bounding_box()
    # The strip below the last place is the ranking's "add at the end" drop zone.
    _drag(page, chip, ranked["x"] + ranked["width"] / 2, ranked["y"] + ranked["height"] - 10)


def test_rank_by_drag_then_by_keyboard_stores_exactly_that_ranking(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    by_drag = make_task(db, TaskKind.rank, k=5)
    by_drag.priority = 10
    by_keys = make_task(db, TaskKind.rank, k=5)
    db.commit()

    page = open_page(user)
    page.goto("/label/next?kind=rank")
    page.wait_for_selector("#pool .chip")
    shown = _pool_order(page)
    assert sorted(shown) == sorted(by_drag.candidate_ids)
    assert page.locator("#submit").is_disabled()

    # Drag: the reverse of the display order, with the 2nd and 3rd tied.
    likerts = {cid: n + 2 for n, cid in enumerate(shown)}
    _rate_all(page, likerts)
    page.click(f"#out-{shown[0]} .flags summary")
    page.check(f'#out-{shown[0]} input[value="hallucination"]')
    page.check(f'#out-{shown[0]} input[value="expresses_opinion"]')
    wanted = list(reversed(shown))
    for cid in wanted:
        _drag_to_end(page, cid)
    assert _ranked_order(page) == wanted
    page.click(f'#ranked .chip[data-cid="{wanted[2]}"] .tie')
    assert page.locator("#submit").is_enabled()
    shot(page, "rank-laptop-filled")
    page.click("#submit")

    # Lands straight on the next task, ranked with the keyboard only.
    page.wait_for_url(re.compile(r"/label/a/\d+"))
    page.wait_for_function(f"document.getElementById('task').dataset.taskId == '{by_keys.id}'")
    shown2 = _pool_order(page)
    for n, cid in enumerate(shown2):
        page.focus(f'#out-{cid} input[type=radio][value="1"]')
        page.keyboard.press(str(7 - n))
    page.focus(f"#out-{shown2[1]} .flags summary")
    page.keyboard.press("Enter")  # opens the flags
    page.focus(f'#out-{shown2[1]} input[value="violent_content"]')
    page.keyboard.press("Space")
    for cid in shown2:  # Enter adds each at the end: display order
        page.focus(f'#pool .chip[data-cid="{cid}"]')
        page.keyboard.press("Enter")
    page.focus(f'#ranked .chip[data-cid="{shown2[4]}"]')
    page.keyboard.press("1")  # the last one goes first
    page.focus(f'#ranked .chip[data-cid="{shown2[0]}"]')
    page.keyboard.press("ArrowDown")
    page.keyboard.press("=")  # tied with the one above it
    expected_keys = [[shown2[4]], [shown2[1], shown2[0]], [shown2[2]], [shown2[3]]]
    assert _ranked_order(page) == [c for g in expected_keys for c in g]
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=There is no rank task for you right now")

    rankings = {r.task_id: r for r in db.scalars(select(Ranking))}
    assert rankings[by_drag.id].groups == [[wanted[0]], [wanted[1], wanted[2]], [wanted[3]],
                                           [wanted[4]]]
    assert rankings[by_drag.id].display_order == shown
    assert rankings[by_keys.id].groups == expected_keys
    ratings = {(r.task_id, r.candidate_id): r for r in db.scalars(select(Rating))}
    assert len(ratings) == 10
    assert {cid: ratings[by_drag.id, cid].likert for cid in shown} == likerts
    assert ratings[by_drag.id, shown[0]].flags == ["hallucination", "expresses_opinion"]
    assert {cid: ratings[by_keys.id, cid].likert for cid in shown2} == {
        cid: 7 - n for n, cid in enumerate(shown2)}
    assert ratings[by_keys.id, shown2[1]].flags == ["violent_content"]
    assert all(r.flags == [] for k, r in ratings.items() if k not in {
        (by_drag.id, shown[0]), (by_keys.id, shown2[1])})


def test_demonstration_draft_survives_reload(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    task = make_task(db, TaskKind.demonstrate)
    db.commit()
    page = open_page(user)
    page.goto("/label/next?kind=demonstrate")
    text = "First paragraph of a long answer.\n\nSecond <b>paragraph</b>, still going."
    page.fill("#answer", text)
    page.wait_for_selector("#save-status:has-text('Saved')")
    page.type("#answer", " More.")  # typed, then reloaded before the autosave fires
    page.reload()
    assert page.input_value("#answer") == text + " More."
    assert "characters" in page.inner_text("#char-count")
    draft = db.scalar(select(Draft).where(Draft.user_id == user.id))
    assert draft is not None and draft.text.startswith(text)
    page.click("#submit")
    page.wait_for_selector("text=There is no demonstrate task for you right now")
    stored = db.scalars(select(Demonstration)).one()
    assert (stored.task_id, stored.text) == (task.id, text + " More.")


def test_double_clicked_submit_stores_one_row(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    task = make_task(db, TaskKind.rate)
    db.commit()
    page = open_page(user)
    page.goto("/label/next?kind=rate")
    page.click(f"#out-{task.candidate_ids[0]} .likert-scale label:nth-child(6)")
    # Two clicks in the same tick, before the first request can disable the button.
    page.eval_on_selector("#submit", "b => { b.click(); b.click(); }")
    page.wait_for_selector("text=There is no rate task for you right now")
    assert db.scalar(select(func.count()).select_from(Rating)) == 1


PAYLOADS = [
    "<script>window.__pwned = 'script'; alert(1)</script>",
    "<img src=x onerror=\"window.__pwned = 'img'; alert(2)\">",
    "</textarea><svg onload=\"window.__pwned = 'svg'\"></svg>\n<b>bold?</b>",
    "\" onmouseover=\"window.__pwned='attr'\" x=\"",
]


def test_untrusted_output_shows_as_text_and_runs_nothing(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    task = make_task(db, TaskKind.rank, k=4, texts=PAYLOADS)
    task.params = {}
    db.commit()
    page = open_page(user)
    page.goto("/label/next?kind=rank")
    for cid, text in zip(task.candidate_ids, PAYLOADS, strict=True):
        assert page.inner_text(f"#out-{cid} .output-text") == text
        page.hover(f"#out-{cid} .output-text")
        page.click(f'#pool .chip[data-cid="{cid}"]')  # tap to rank moves the nodes around
    assert page.locator("#ranked img, #ranked svg, .output-text *").count() == 0
    assert page.evaluate("window.__pwned") is None
    shot(page, "rank-payloads-laptop")
    # open_page's teardown fails the test on any dialog or page error.


def test_labeler_cannot_open_another_labelers_assignment(committed_db, open_page):
    db = committed_db
    owner, intruder = make_user(db), make_user(db)
    task = make_task(db, TaskKind.rank, texts=["secret output one", "two", "three", "four"])
    assignment = lease(db, owner, task)
    db.commit()
    page = open_page(intruder)
    resp = page.goto(f"/label/a/{assignment.id}")
    assert resp.status == 404
    assert "secret output one" not in page.content()
    api = page.request.get(f"/api/v1/assignments/{assignment.id}/draft")
    assert api.status == 404


def test_screens_are_captured_at_laptop_and_phone_widths(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    admin = make_user(db, "admin")
    long_prompt = ("Summarise the following notes for a busy manager:\n" +
                   "\n".join(f"- point {i}: " + "details " * 12 for i in range(30)))
    make_task(db, TaskKind.rank, k=6, overlap=2, texts=[
        "A short answer.", "A longer answer that goes on " + "and on " * 60,
        "Line one\nLine two\nLine three", "Sure! Here is a list:\n1. one\n2. two\n3. three",
        "I can't help with that.", "Another candidate output."])
    for kind in (TaskKind.rate, TaskKind.demonstrate, TaskKind.write_prompt):
        make_task(db, kind, overlap=2,
                  params={"prompt_kind": "few_shot"} if kind == "write_prompt" else None)
    demo = make_task(db, TaskKind.demonstrate, overlap=2)
    from app.prompts.models import Prompt
    db.get(Prompt, demo.prompt_id).text = long_prompt
    db.commit()
    users = {"laptop": user, "phone": make_user(db)}
    db.commit()
    for label, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        page = open_page(users[label], viewport)
        page.goto("/label")
        shot(page, f"start-{label}")
        for kind in ("rank", "rate", "demonstrate", "write_prompt"):
            page.goto(f"/label/next?kind={kind}")
            assert page.locator("#task").count() == 1, (kind, page.url, page.inner_text("main"))
            shot(page, f"{kind}-{label}")
        page.goto("/label/next?kind=demonstrate")
        page.click("#skip")
        page.click("#skip-confirm")  # skipping lands on the next demonstration: the long prompt
        page.wait_for_selector("#prompt-text:has-text('point 29')")
        shot(page, f"demonstrate-long-{label}")
        page.goto("/label/mine")
        shot(page, f"mine-{label}")
        admin_page = open_page(admin, viewport)
        admin_page.goto("/label/guidelines")
        shot(admin_page, f"guidelines-{label}")
