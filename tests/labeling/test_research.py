"""Researchers' pages: a task's labels side by side, the tasks behind two labelers'
agreement, review of demonstrations and prompts, prompt flags and gold answers."""

import re

from sqlalchemy import select

from app.auth.models import Role
from app.labeling.models import Demonstration, PromptFlag
from app.queue.models import Assignment, Task, TaskKind
from tests.factories import login, make_demonstration, make_prompt, make_user, ranked_task


def test_task_view_shows_rankings_side_by_side_with_disagreement(client, db):
    a, b = make_user(db, email="ann@example.com"), make_user(db, email="bob@example.com")
    task, cands = ranked_task(db, 4, [(a, [[0], [1], [2], [3]]), (b, [[3], [2], [1], [0]])])
    cands[0].text = "<script>alert(1)</script>"
    db.flush()
    login(client, make_user(db, Role.researcher))
    page = client.get(f"/tasks/{task.id}")
    assert page.status_code == 200
    assert "ann@example.com" in page.text and "bob@example.com" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert" not in page.text
    # Fully reversed orders: they agree on none of the 6 pairs.
    assert "Mean pairwise agreement on this task:" in page.text
    assert "<strong>0%</strong>" in page.text and "of 6 pairs" in page.text
    assert client.get("/tasks/999999").status_code == 404


def test_shared_tasks_list_worst_agreement_first_and_links_to_tasks(client, db):
    a, b = make_user(db), make_user(db)
    agreed, _ = ranked_task(db, 4, [(a, [[0], [1], [2], [3]]), (b, [[0], [1], [2], [3]])])
    split, _ = ranked_task(db, 4, [(a, [[0], [1], [2], [3]]), (b, [[1], [0], [3], [2]])])
    login(client, make_user(db, Role.admin))
    page = client.get(f"/agreement/tasks?labeler={a.id}&other={b.id}").text
    assert page.index(f'href="/tasks/{split.id}"') < page.index(f'href="/tasks/{agreed.id}"')
    assert "67%" in page and "100%" in page
    assert client.get("/agreement/tasks?labeler=999999").status_code == 404


def test_review_rejects_with_a_reason_and_accepts(client, db):
    labeler = make_user(db)
    demo = make_demonstration(db, make_prompt(db), labeler, "A <b>bold</b> answer")
    csrf = login(client, make_user(db, Role.researcher))
    page = client.get("/review")
    assert "A &lt;b&gt;bold&lt;/b&gt; answer" in page.text and f'id="r{demo.id}"' in page.text
    resp = client.post(f"/review/demonstration/{demo.id}", follow_redirects=True,
                       data={"decision": "rejected", "reason": "  ", "csrf_token": csrf})
    assert "Say why it is rejected." in resp.text
    db.expire_all()
    assert db.get(Demonstration, demo.id).review is None
    client.post(f"/review/demonstration/{demo.id}",
                data={"decision": "rejected", "reason": "Made-up facts", "csrf_token": csrf})
    db.expire_all()
    row = db.get(Demonstration, demo.id)
    assert (row.review, row.review_reason) == ("rejected", "Made-up facts")
    assert f'id="r{demo.id}"' not in client.get("/review").text  # no longer pending
    assert "Made-up facts" in client.get("/review?state=rejected").text
    assert client.post("/review/demonstration/999999", data={
        "decision": "accepted", "csrf_token": csrf}).status_code == 404


def test_labeler_written_prompts_are_reviewed_too(client, db):
    from app.labeling.models import WrittenPrompt
    from tests.factories import finished, make_task

    labeler = make_user(db)
    prompt = make_prompt(db, "Write a sonnet about <tea>")
    task = make_task(db, TaskKind.write_prompt)
    row = WrittenPrompt(task_id=task.id, assignment_id=finished(db, task, labeler).id,
                        user_id=labeler.id, prompt_id=prompt.id, prompt_kind="plain",
                        seconds_spent=3, idempotency_key="wp-review-1")
    db.add(row)
    db.flush()
    csrf = login(client, make_user(db, Role.admin))
    page = client.get("/review?what=prompt").text
    assert "Write a sonnet about &lt;tea&gt;" in page and f'id="r{row.id}"' in page
    client.post(f"/review/prompt/{row.id}", data={"decision": "accepted", "csrf_token": csrf})
    db.expire_all()
    assert db.get(WrittenPrompt, row.id).review == "accepted"


def test_prompt_flags_page_lists_what_labelers_reported(client, db):
    labeler = make_user(db, email="flagger@example.com")
    prompt = make_prompt(db, "My phone number is 555-0100")
    db.add(PromptFlag(prompt_id=prompt.id, user_id=labeler.id, reason="pii",
                      comment="<i>phone</i> number"))
    db.flush()
    login(client, make_user(db, Role.researcher))
    page = client.get("/review/flags?reason=pii").text
    assert "My phone number is 555-0100" in page and "flagger@example.com" in page
    assert "&lt;i&gt;phone&lt;/i&gt; number" in page
    assert "555-0100" not in client.get("/review/flags?reason=harmful").text


def test_gold_answer_is_made_and_edited_in_the_browser(client, db):
    a = make_user(db)
    task, cands = ranked_task(db, 4, [(a, [[0], [1], [2], [3]])])
    csrf = login(client, make_user(db, Role.admin))
    form = {"csrf_token": csrf, "gold": "on", f"place-{cands[0].id}": "1",
            f"place-{cands[1].id}": "2", f"place-{cands[2].id}": "2",
            f"place-{cands[3].id}": "9"}
    bad = client.post(f"/tasks/{task.id}/gold", data=form)
    assert bad.status_code == 422
    assert "must be a whole number from 1 to 4, not &#39;9&#39;" in bad.text
    assert f'name="place-{cands[2].id}" min="1" max="4" value="2"' in bad.text  # kept
    form[f"place-{cands[3].id}"] = "3"
    assert client.post(f"/tasks/{task.id}/gold", data=form,
                       follow_redirects=False).status_code == 303
    db.expire_all()
    row = db.get(Task, task.id)
    assert row.gold and row.gold_answer == [[cands[0].id], [cands[1].id, cands[2].id],
                                           [cands[3].id]]
    page = client.get(f"/tasks/{task.id}/gold").text
    assert f'name="place-{cands[3].id}" min="1" max="4" value="3"' in page
    client.post(f"/tasks/{task.id}/gold", data={"csrf_token": csrf})
    db.expire_all()
    assert not db.get(Task, task.id).gold
    assert db.scalars(select(Task).where(Task.kind == TaskKind.rank)).all()


def test_labelers_cannot_open_research_pages(client, db):
    task, _ = ranked_task(db, 4, [])
    login(client, make_user(db))
    for url in (f"/tasks/{task.id}", "/review", "/review/flags", f"/tasks/{task.id}/gold",
                f"/agreement/tasks?labeler={task.id}"):
        assert client.get(url).status_code == 403, url


def test_task_view_shows_the_letter_each_labeler_saw(client, db):
    a, b = make_user(db, email="ann@example.com"), make_user(db, email="bob@example.com")
    task, cands = ranked_task(db, 4, [(a, [[0], [1], [2], [3]]), (b, [[3], [2], [1], [0]])])
    shown = {a.id: [c.id for c in reversed(cands)], b.id: [cands[i].id for i in (2, 0, 3, 1)]}
    for assignment in db.scalars(select(Assignment).where(Assignment.task_id == task.id)):
        assignment.display_order = shown[assignment.user_id]
    db.flush()
    login(client, make_user(db, Role.researcher))
    page = client.get(f"/tasks/{task.id}").text
    rows = re.findall(r"<tr><td><strong>([A-I])</strong>(.*?)</tr>", page, re.S)
    seen = {letter: re.findall(r"saw&nbsp;([A-I])</span>", cells) for letter, cells in rows}
    # Task order A..D; Ann saw them reversed, Bob as C, A, D, B.
    assert seen == {"A": ["D", "B"], "B": ["C", "D"], "C": ["B", "A"], "D": ["A", "C"]}
