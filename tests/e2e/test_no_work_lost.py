"""Labelers lose no work: drafts of every kind, read-only submitted tasks, an ended session,
and a whole K = 9 ranking with ties done from the keyboard alone."""

import re

import pytest
from sqlalchemy import select

from app.labeling.models import Draft, Ranking, Rating
from app.queue.models import TaskKind
from tests.e2e.conftest import ARTIFACTS, LAPTOP, PHONE, shot
from tests.factories import PASSWORD, make_task, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]


def _ids(page, selector: str) -> list[int]:  # type: ignore[no-untyped-def]
    found = page.eval_on_selector_all(selector, "e => e.map(c => c.dataset.cid)")
    return [int(x) for x in found]


def _pool(page) -> list[int]:  # type: ignore[no-untyped-def]
    return _ids(page, "#pool .chip")


def _ranked(page) -> list[int]:  # type: ignore[no-untyped-def]
    return _ids(page, "#ranked .chip")


def _likert(page, cid: int) -> str | None:  # type: ignore[no-untyped-def]
    return page.eval_on_selector(
        f"#out-{cid}", "c => (c.querySelector('input[type=radio]:checked') || {}).value || null")


def _saved(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#save-status:has-text('Saved')")


def _draft(db, user) -> Draft:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.scalars(select(Draft).where(Draft.user_id == user.id)).one()


def test_reload_and_another_device_keep_a_half_done_ranking(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    make_task(db, TaskKind.rank, k=5)
    db.commit()
    page = open_page(user)
    page.goto("/label/next?kind=rank")
    shown = _pool(page)
    page.click(f"#out-{shown[0]} .likert-scale label:nth-child(6)")
    page.click(f"#out-{shown[1]} .likert-scale label:nth-child(2)")
    page.click(f"#out-{shown[1]} .flags summary")
    page.check(f'#out-{shown[1]} input[value="harmful_advice"]')
    page.click(f'#pool .chip[data-cid="{shown[2]}"]')
    page.click(f'#pool .chip[data-cid="{shown[0]}"]')
    page.click(f'#ranked .chip[data-cid="{shown[0]}"] .tie')
    _saved(page)
    page.reload()
    assert _ranked(page) == [shown[2], shown[0]]
    assert page.get_attribute(f'#ranked .chip[data-cid="{shown[0]}"]', "data-tie") == "1"
    assert (_likert(page, shown[0]), _likert(page, shown[1])) == ("6", "2")
    assert page.is_checked(f'#out-{shown[1]} input[value="harmful_advice"]')
    assert page.inner_text(f"#out-{shown[1]} .flag-count") == "1"

    other = open_page(user)  # another browser: only the server has the draft
    other.goto(page.url)
    assert _ranked(other) == [shown[2], shown[0]]
    assert _likert(other, shown[0]) == "6"
    assert other.is_checked(f'#out-{shown[1]} input[value="harmful_advice"]')
    assert _draft(db, user).data["ranking"] == [[shown[2], shown[0]]]


def test_rate_and_few_shot_prompt_drafts_survive_reload(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    rate = make_task(db, TaskKind.rate)
    make_task(db, TaskKind.write_prompt, params={"prompt_kind": "few_shot"})
    db.commit()
    page = open_page(user)
    page.goto("/label/next?kind=rate")
    cid = rate.candidate_ids[0]
    page.click(f"#out-{cid} .likert-scale label:nth-child(4)")
    page.fill("#comment", "Too long-winded.")
    _saved(page)
    page.reload()
    assert _likert(page, cid) == "4" and page.input_value("#comment") == "Too long-winded."

    page.goto("/label/next?kind=write_prompt")
    page.fill("#answer", "Translate to French.")
    page.fill(".ex-input", "cat")
    page.fill(".ex-output", "chat")
    page.click("#add-example")
    page.fill(".example:nth-child(2) .ex-input", "dog")
    _saved(page)
    page.reload()
    assert page.input_value("#answer") == "Translate to French."
    assert page.eval_on_selector_all(".ex-input", "e => e.map(x => x.value)") == ["cat", "dog"]
    assert page.input_value(".ex-output") == "chat"


def test_back_after_submit_shows_the_submitted_task_read_only(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    task = make_task(db, TaskKind.rate)
    db.commit()
    page = open_page(user)
    page.goto("/label/next?kind=rate")
    task_url = page.url
    cid = task.candidate_ids[0]
    page.click(f"#out-{cid} .likert-scale label:nth-child(5)")
    page.fill("#comment", "Fine.")
    page.click("#submit")
    page.wait_for_selector("text=There is no rate task for you right now")
    page.go_back()
    page.wait_for_selector("#read-only")
    assert page.url == task_url
    assert _likert(page, cid) == "5" and page.input_value("#comment") == "Fine."
    assert page.is_disabled(f'#out-{cid} input[value="2"]') and page.is_disabled("#comment")
    assert page.is_disabled("#submit") and page.locator("#skip-form").count() == 0
    aid = page.get_attribute("#task", "data-assignment-id")
    resp = page.request.put(f"/api/v1/assignments/{aid}/draft", data={"text": "x"},
                            headers={"X-CSRF-Token": page.get_attribute(
                                'meta[name="csrf-token"]', "content")})
    assert resp.status == 409
    shot(page, "rate-submitted-read-only-laptop")
    db.expire_all()
    assert [r.likert for r in db.scalars(select(Rating))] == [5]


def test_ended_session_keeps_the_work_and_login_returns_to_the_task(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    make_task(db, TaskKind.rank, k=4)
    db.commit()
    page = open_page(user)
    page.goto("/label/next?kind=rank")
    shown = _pool(page)
    page.click(f"#out-{shown[0]} .likert-scale label:nth-child(7)")
    _saved(page)
    page.context.clear_cookies()  # the session ends (expired, or logged out elsewhere)
    page.click(f"#out-{shown[1]} .likert-scale label:nth-child(3)")
    page.click(f'#pool .chip[data-cid="{shown[3]}"]')
    page.wait_for_selector("#session-ended", state="visible")
    shot(page, "rank-session-ended-laptop")
    page.click("#relogin")
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/label/a/\d+"))
    page.wait_for_selector("#task")
    assert (_likert(page, shown[0]), _likert(page, shown[1])) == ("7", "3")
    assert _ranked(page) == [shown[3]]
    _saved(page)  # the kept work reaches the server once logged in again
    draft = _draft(db, user)
    assert draft.data["likert"] == {str(shown[0]): 7, str(shown[1]): 3}
    assert draft.data["ranking"] == [[shown[3]]]


def _tab_to(page, selector: str, limit: int = 80) -> None:  # type: ignore[no-untyped-def]
    """Press Tab until the focused element matches `selector` (keyboard only)."""
    for _ in range(limit):
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def test_k9_ranking_with_ties_by_keyboard_only(committed_db, open_page):
    db = committed_db
    user = make_user(db)
    texts = [f"Candidate number {i}: " + "a fairly similar answer that goes on " * 4
             for i in range(9)]
    task = make_task(db, TaskKind.rank, k=9, texts=texts)
    db.commit()
    page = open_page(user, LAPTOP)
    page.goto("/label/next?kind=rank")
    page.wait_for_selector("#pool .chip")
    shown = _pool(page)
    # Submit is on screen at the top of the page and after scrolling to the last output.
    assert page.locator("#submit").is_visible()
    for y in (0, 10_000):
        page.evaluate(f"window.scrollTo(0, {y})")
        box = page.locator("#submit").bounding_box()
        assert box and 0 <= box["y"] and box["y"] + box["height"] <= LAPTOP["height"], box
    page.evaluate("window.scrollTo(0, 0)")

    # `?` opens the shortcut list where it can be seen; Escape closes it.
    page.keyboard.press("?")
    dialog = page.locator("#keys-dialog")
    assert dialog.is_visible()
    box = dialog.bounding_box()
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP["height"]
    shot(page, "rank-k9-shortcuts-laptop")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()

    # A Likert score for each output: Tab into its scale, press the digit.
    for n, cid in enumerate(shown):
        _tab_to(page, f"#out-{cid} input[type=radio]")
        page.keyboard.press(str(7 - n % 7))
    # The order: Enter places and moves on to the next unplaced output; = ties.
    _tab_to(page, "#pool .chip")
    assert page.evaluate("document.activeElement.dataset.cid") == str(shown[0])
    keys = ["Enter", "=", "Enter", "Enter", "=", "=", "Enter", "Enter", "Enter"]
    for key in keys:
        page.keyboard.press(key)
    want: list[list[int]] = []
    for key, cid in zip(keys, shown, strict=True):
        if key == "=":
            want[-1].append(cid)
        else:
            want.append([cid])
    assert _pool(page) == []
    # With every output placed and rated, focus has moved on to Submit.
    assert page.evaluate("document.activeElement.id") == "submit"
    shot(page, "rank-k9-keyboard-laptop")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=There is no rank task for you right now")
    db.expire_all()
    ranking = db.scalars(select(Ranking).where(Ranking.task_id == task.id)).one()
    assert ranking.groups == want
    likerts = {r.candidate_id: r.likert for r in db.scalars(select(Rating))}
    assert likerts == {cid: 7 - n % 7 for n, cid in enumerate(shown)}


def test_k9_screens_at_laptop_and_phone(committed_db, open_page):
    db = committed_db
    users = {"laptop": make_user(db), "phone": make_user(db)}
    for _ in users:
        make_task(db, TaskKind.rank, k=9, texts=[
            f"Candidate number {i}: " + "a fairly similar answer that goes on " * 4
            for i in range(9)])
    db.commit()
    for label, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        page = open_page(users[label], viewport)
        page.goto("/label/next?kind=rank")
        shown = _pool(page)
        for cid in shown[:5]:
            page.click(f'#pool .chip[data-cid="{cid}"]')
        page.click(f'#ranked .chip[data-cid="{shown[2]}"] .tie')
        page.focus(f'#pool .chip[data-cid="{shown[6]}"]')
        shot(page, f"rank-k9-{label}")
        page.screenshot(path=str(ARTIFACTS / f"rank-k9-{label}-viewport.png"))
        page.click("#skip")
        shot(page, f"rank-skip-menu-{label}")
