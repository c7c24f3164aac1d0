"""The blind compare screen (keyboard and mouse) and the results chart in real Chromium."""

import pytest
from sqlalchemy import select

from app.auth.models import Role
from app.evaluation.models import EvaluationItem, Judgment
from app.queue.models import Assignment
from tests.e2e.conftest import shot
from tests.evaluation.factories import campaign, make_prompts, make_version
from tests.factories import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]


def _assignment_id(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.get_attribute("#compare", "data-assignment-id"))


def test_compare_by_keyboard_then_by_mouse_stores_both_judgments(committed_db, open_page):
    db = committed_db
    make_prompts(db, 2)
    base = make_version(db, "sft", name="Hidden-Baseline-Name")
    policy = make_version(db, "policy", name="Hidden-Policy-Name")
    ev = campaign(db, None, candidates=[policy], baseline=base, n=2)
    judge = make_user(db, Role.labeler, held_out=True)
    db.commit()

    page = open_page(judge)
    page.goto("/label/next?kind=compare")
    page.wait_for_selector("#slot-B")
    html = page.content()
    assert "Hidden-Baseline-Name" not in html and "Hidden-Policy-Name" not in html
    first = _assignment_id(page)
    b_cid = int(page.get_attribute("#slot-B", "data-cid"))
    assert page.locator("#submit").is_disabled()

    # Keyboard only: focus B, Likert 6, "B is better", Enter.
    page.keyboard.press("]")
    page.keyboard.press("6")
    page.keyboard.press("b")
    assert page.locator('input[name="choice"][value="b"]').is_checked()
    assert page.locator('input[name="likert-B"][value="6"]').is_checked()
    shot(page, "compare-keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: f"/label/a/{first}" not in url and "/label/a/" in url)

    # Mouse only: Likert 3 and a flag on A, "A is better", Submit.
    second = _assignment_id(page)
    a_cid = int(page.get_attribute("#slot-A", "data-cid"))
    page.click("#slot-A .likert-scale label:nth-child(3)")
    page.click("#slot-A .flags summary")
    page.check('#slot-A input[value="hallucination"]')
    page.click('label:has(input[name="choice"][value="a"])')
    page.click("#submit")
    page.wait_for_url(lambda url: "/label/a/" not in url)
    assert "There is no compare task for you right now" in page.content()

    db.expire_all()
    rows = {j.assignment_id: j for j in db.scalars(select(Judgment))}
    assert rows[first].choice == "b" and rows[first].ratings == {
        str(b_cid): {"likert": 6, "flags": []}}
    assert rows[second].choice == "a" and rows[second].ratings == {
        str(a_cid): {"likert": 3, "flags": ["hallucination"]}}
    for aid, row in rows.items():
        item = db.get(EvaluationItem, row.item_id)
        shown = db.get(Assignment, aid).display_order
        winner = shown[0] if row.choice == "a" else shown[1]
        assert row.outcome == ("candidate" if winner == item.candidate_id else "baseline")
        assert item.evaluation_id == ev.id


def test_results_page_draws_win_rates_with_their_intervals(committed_db, open_page):
    db = committed_db
    make_prompts(db, 6)
    base = make_version(db, "sft", name="sft-baseline")
    strong = make_version(db, "policy", name="ppo-strong")
    weak = make_version(db, "policy", name="ppo-weak")
    ev = campaign(db, None, candidates=[strong, weak], baseline=base, n=6)
    items = db.scalars(select(EvaluationItem).where(EvaluationItem.evaluation_id == ev.id)
                       .order_by(EvaluationItem.id)).all()
    for n, item in enumerate(items):
        user = make_user(db, Role.labeler, held_out=True)
        order = [item.candidate_id, item.baseline_candidate_id]
        a = Assignment(task_id=item.task_id, user_id=user.id, display_order=order,
                       expires_at=ev.created_at, state="submitted")
        db.add(a)
        db.flush()
        wins = item.model_id == strong.id and n % 6 != 0 or item.model_id == weak.id and n % 3 == 0
        db.add(Judgment(evaluation_id=ev.id, item_id=item.id, task_id=item.task_id,
                        assignment_id=a.id, user_id=user.id, choice="a" if wins else "b",
                        outcome="candidate" if wins else "baseline", display_order=order,
                        ratings={}, seconds_spent=3, idempotency_key=f"key-{a.id}-e2e"))
    researcher = make_user(db, Role.researcher)
    db.commit()

    page = open_page(researcher)
    page.goto(f"/evaluations/{ev.id}")
    page.wait_for_selector('#winrate-chart[data-ready="1"]')
    chart = page.evaluate("""() => ({labels: window.evaluationChart.data.labels,
        rates: window.evaluationChart.data.datasets[0].data})""")
    api = page.request.get(f"/api/v1/evaluations/{ev.id}/results").json()
    expected = [round(r["win_rate"] * 1000) / 10 for r in api["results"]]
    assert chart["labels"] == ["ppo-strong", "ppo-weak"] and chart["rates"] == expected
    assert expected[0] > 50 > expected[1]
    assert page.locator("#results tbody tr").count() == 2
    assert "Automatic signals" in page.inner_text("#automatic")
    shot(page, "evaluation-results")
    csv_text = page.request.get(f"/evaluations/{ev.id}/results.csv").text()
    assert csv_text.splitlines()[0].startswith("model_id,name,win_rate,ci95_lo,ci95_hi")


def test_the_form_proposes_the_active_versions_and_a_campaign_is_closed_early(committed_db,
                                                                             open_page):
    from app.registry import service as registry

    db = committed_db
    make_prompts(db, 1)
    oldest, active_sft, newest = (make_version(db, "sft", name=f"sft-{n}") for n in range(3))
    active_policy, other = make_version(db, "policy"), make_version(db, "policy")
    for version in (active_sft, active_policy):
        registry.move_alias(db=db, alias=f"{version.kind}:active", version=version,
                            user_id=None, action="promote")
    ev = campaign(db, None, candidates=[other], baseline=newest, n=1)
    researcher = make_user(db, Role.researcher)
    db.commit()

    page = open_page(researcher)
    page.goto("/evaluations")
    # What the browser will send, not just what the HTML says: one SFT is chosen.
    assert page.input_value("select[name=baseline_id]") == str(active_sft.id)
    assert page.is_checked(f"input[name=model_ids][value='{active_policy.id}']")
    assert not page.is_checked(f"input[name=model_ids][value='{other.id}']")
    assert page.input_value("input[name=n_prompts]") == "1"
    assert page.inner_text("#prompts-available") == "Only 1 test prompt in the test split."
    shot(page, "evaluation-form-defaults")

    page.goto(f"/evaluations/{ev.id}")
    assert page.inner_text("#state") == "labeling"
    page.click("#close-evaluation summary")
    page.click("#confirm-close")
    page.wait_for_selector("#closed-reason")
    assert page.inner_text("#state") == "complete"
    assert page.inner_text("#closed-reason").startswith(f"Closed early by {researcher.email}")
    assert page.locator("#close-evaluation").count() == 0
