"""What a reviewer rejected stays out of sft and prompt exports unless asked for."""

from app.labeling.models import WrittenPrompt
from app.queue.models import TaskKind
from tests.factories import finished, make_demonstration, make_prompt, make_task, make_user


def test_rejected_demonstrations_and_prompts_are_left_out_by_default(db, export):
    labeler = make_user(db)
    make_demonstration(db, make_prompt(db), labeler, "kept")
    rejected = make_demonstration(db, make_prompt(db), labeler, "rejected")
    accepted = make_demonstration(db, make_prompt(db), labeler, "accepted")
    rejected.review, accepted.review = "rejected", "accepted"
    for text, review in (("written and rejected", "rejected"), ("written and fine", None)):
        prompt = make_prompt(db, text)
        task = make_task(db, TaskKind.write_prompt)
        db.add(WrittenPrompt(task_id=task.id, assignment_id=finished(db, task, labeler).id,
                             user_id=labeler.id, prompt_id=prompt.id, prompt_kind="plain",
                             seconds_spent=3, idempotency_key=f"wp-{text}", review=review))
    db.flush()

    _, rows = export("sft")
    assert sorted(r["completion"] for r in rows) == ["accepted", "kept"]
    _, rows = export("sft", include_rejected=True)
    assert sorted(r["completion"] for r in rows) == ["accepted", "kept", "rejected"]
    _, rows = export("prompts")
    texts = {r["text"] for r in rows}
    assert "written and fine" in texts and "written and rejected" not in texts
    _, rows = export("prompts", include_rejected=True)
    assert "written and rejected" in {r["text"] for r in rows}
