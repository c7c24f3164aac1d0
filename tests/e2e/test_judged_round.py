"""A round waiting for people's judgment on /jobs in real Chromium, at laptop and phone
widths: its state and why, its campaign, and a researcher promoting it by hand in two
steps."""

import pytest

from app.rounds import service as rounds
from app.rounds.models import Round
from tests.e2e.conftest import LAPTOP, PHONE, shot
from tests.factories import make_user
from tests.jobs.judging import trained_round

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]


def test_a_waiting_round_shows_why_and_is_promoted_by_hand(committed_db, open_page):
    db = committed_db
    rnd, ev = trained_round(db)
    rounds.settle(db=db, round_id=rnd.id)
    researcher = make_user(db, "researcher")
    db.commit()
    card = f"#round-{rnd.id}"
    for label, viewport in (("phone", PHONE), ("laptop", LAPTOP)):
        page = open_page(researcher, viewport)
        page.goto("/jobs")
        assert page.get_attribute(card, "data-state") == "awaiting_judgment"
        assert "Waiting for people to judge" in page.inner_text(f"{card} .round-decision")
        assert page.get_attribute(f"{card} .round-judgment a", "href") == f"/evaluations/{ev.id}"
        assert "waiting for people to judge" in page.inner_text("#trigger-disabled")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], width
        shot(page, f"jobs-awaiting-judgment-{label}")
    page.click(f"#promote-round-{rnd.id} summary")
    page.click(f"#confirm-promote-round-{rnd.id}")
    page.wait_for_selector(f'{card}[data-state="running"]')
    assert page.inner_text(f"{card} .round-decision").startswith(
        f"Promoted by hand by {researcher.email}")
    db.expire_all()
    assert db.get(Round, rnd.id).decision["action"] == "promoted"
