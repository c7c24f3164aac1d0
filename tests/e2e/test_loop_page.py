"""/loop in real Chromium at laptop and phone widths: every round's row and the four
charts drawn, no sideways scroll on a phone, and a round that finishes while the page is
open appears without a reload, its text shown as text."""

import pytest

from app.auth.models import Role
from tests.e2e.conftest import LAPTOP, PHONE, shot
from tests.factories import make_user
from tests.loop.factories import judged, make_round, ppo_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]

CHARTS = ("rm", "human", "ppo", "watch")
REFRESH_TIMEOUT_MS = 15_000  # the page fetches every 5 s


def _no_sideways_scroll(page) -> None:  # type: ignore[no-untyped-def]
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], (page.url, width)


def _charts_drawn(page) -> None:  # type: ignore[no-untyped-def]
    for name in CHARTS:
        page.wait_for_selector(f"#chart-{name}[data-ready='1']", state="attached")


def test_loop_page_at_laptop_and_phone_follows_new_rounds(committed_db, open_page):
    db = committed_db
    _, v1 = make_round(db, metrics=ppo_metrics(rm_score=0.6, kl=3.0))
    judged(db, candidate=v1["policy"], baseline=v1["sft"], wins=24, losses=6)
    _, v2 = make_round(db, metrics=ppo_metrics(rm_score=1.6, kl=6.0, mean_length=44.0))
    gamed = judged(db, candidate=v2["policy"], baseline=v1["policy"], wins=15, losses=15)
    gamed.rm_verdict = {"reward_model_id": v2["rm"].id,  # its RM prefers what people find level
                        "by_model": {str(v2["policy"].id): {"win_rate": 0.9, "n": 30, "ties": 0}}}
    researcher = make_user(db, Role.researcher)
    db.commit()

    page = open_page(researcher, LAPTOP)
    page.goto("/loop")
    _charts_drawn(page)
    assert page.locator("#loop-table tbody tr").count() == 2
    assert page.locator("#loop-table tr.flagged").count() == 1
    assert page.locator("nav.nav a").first.get_attribute("href") == "/loop"
    _no_sideways_scroll(page)
    shot(page, "loop-laptop")

    # a round finishes while the page is open: it appears without a reload
    page.evaluate("window.stillHere = true")
    r3, v3 = make_round(db, metrics=ppo_metrics(rm_score=0.8, kl=2.0))
    v3["policy"].name = "<img src=x onerror=alert(1)>"
    db.commit()
    page.wait_for_selector(f"tr[data-round-id='{r3.id}']", timeout=REFRESH_TIMEOUT_MS)
    assert page.evaluate("window.stillHere") is True
    assert page.locator("#loop-table tbody tr").count() == 3
    name = page.locator(f"tr[data-round-id='{r3.id}'] .policy-name")
    assert name.text_content() == "<img src=x onerror=alert(1)>"
    assert page.locator("#loop-table img").count() == 0
    assert page.evaluate("window.loopCharts.rm.data.labels.length") == 3
    # redrawn from the JSON, the RM's verdict on the judged pairs is still beside people's
    assert page.locator("#loop-table td:has-text('· RM 90%')").count() == 1

    phone = open_page(researcher, PHONE)
    phone.goto("/loop")
    _charts_drawn(phone)
    _no_sideways_scroll(phone)
    shot(phone, "loop-phone")
