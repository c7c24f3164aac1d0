"""What a round needs from the data, shown on /jobs before anyone is refused, and said in
the refusal: counts against the minimums and how to get more."""

import html
import re

from app.auth.models import Role
from app.prompts.models import Split
from app.queue.models import TaskKind
from app.rounds import feedback
from tests.factories import login, make_demonstration, make_prompt, make_task, make_user


def test_readiness_counts_train_data_and_points_at_the_waiting_tasks(db):
    labeler = make_user(db, Role.labeler)
    for _ in range(3):
        make_demonstration(db, make_prompt(db), labeler)
    make_demonstration(db, make_prompt(db, split=Split.test), labeler)  # not training data
    before = feedback.readiness(db=db)[0]
    make_task(db, TaskKind.demonstrate, overlap=2)
    make_task(db, TaskKind.demonstrate, prompt=make_prompt(db, split=Split.valid))  # not train
    needs = {n.stage: n for n in feedback.readiness(db=db)}
    assert (needs["sft"].have, needs["sft"].need, needs["sft"].ok) == (3, 6, False)
    waiting = int(re.search(r"Label the (\d+) demonstrations waiting on /label",
                            needs["sft"].sentence()).group(1))  # type: ignore[union-attr]
    assert waiting == int(re.search(r"\d+", before.how).group(0)) + 2  # type: ignore[union-attr]
    assert "there are 3" in needs["sft"].sentence()
    assert needs["rm"].have == 0 and "rlhf-studio candidates import" in needs["rm"].how
    assert needs["ppo"].ok  # train prompts exist


def test_jobs_page_shows_what_each_stage_has_and_what_is_missing(client, db):
    make_task(db, TaskKind.rank, overlap=2)
    login(client, make_user(db, Role.researcher))
    page = " ".join(html.unescape(client.get("/jobs").text).split())
    assert 'id="readiness"' in page
    assert "✗ SFT: 0 demonstrations on train-split prompts (needs 6)" in page
    assert "Rank the 2 outputs sets waiting on /label" in page
    assert "✓ PPO: 1 train-split prompts to roll out on" in page


def test_refused_round_says_how_to_get_more_data(client, db):
    from app.auth import service as auth

    _, token = auth.create_token(db=db, user=make_user(db, Role.researcher), name="t")
    make_task(db, TaskKind.demonstrate)
    resp = client.post("/api/v1/rounds", json={"stages": ["sft"]},
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "SFT needs at least 6 demonstrations" in detail and "there are 0" in detail
    assert "Label the 1 demonstrations waiting on /label" in detail
