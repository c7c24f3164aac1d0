"""A round that trained but learned nothing says so, instead of looking like success: a
reward model at chance, a policy that barely moved from its SFT, a generate stage that made
no rank task (on /jobs and in the round's JSON)."""

import html

from app.auth import service as auth
from app.auth.models import Role
from app.jobs import service as jobs
from app.rounds import feedback
from app.rounds import service as rounds
from app.rounds.models import Round
from tests.factories import login, make_user


def _round(db, rm_accuracy: float, kl: float, tasks: int) -> Round:  # type: ignore[no-untyped-def]
    rnd = Round(state="succeeded", stages=["rm", "ppo"], config={}, promote=True,
                generate={"k": 4}, exclusive=True, trigger="manual", watermark={})
    db.add(rnd)
    db.flush()
    outputs = {"export": {}, "rm": {"metrics": {"val_accuracy": rm_accuracy}},
               "ppo": {"metrics": {"kl": kl, "test_kl": kl}}, "promote": {},
               "generate": {"tasks": tasks, "reason": "no eligible prompt" if not tasks else None}}
    for position, (kind, out) in enumerate(outputs.items()):
        job = jobs.submit(db=db, kind=kind, config={}, round_id=rnd.id, position=position)
        job.state, job.outputs = "succeeded", out
    db.flush()
    return rnd


def test_a_round_that_learned_nothing_gets_a_sentence_per_stage(db):
    rnd = _round(db, rm_accuracy=0.48, kl=0.004, tasks=0)
    said = feedback.warnings(rounds.current_jobs(db=db, round_id=rnd.id))
    assert len(said) == 3
    assert "reward model is at chance" in said[0] and "0.48" in said[0]
    assert "barely moved from its SFT" in said[1] and "0.004" in said[1]
    assert "made no new rank task: no eligible prompt" in said[2]


def test_a_round_that_learned_has_no_warning(db):
    rnd = _round(db, rm_accuracy=0.71, kl=4.2, tasks=12)
    assert feedback.warnings(rounds.current_jobs(db=db, round_id=rnd.id)) == []


def test_the_round_json_and_the_jobs_page_show_the_warnings(client, db):
    quiet = _round(db, rm_accuracy=0.5, kl=0.01, tasks=3)
    fine = _round(db, rm_accuracy=0.7, kl=3.0, tasks=3)
    user = make_user(db, Role.researcher)
    _, token = auth.create_token(db=db, user=user, name="t")
    headers = {"Authorization": f"Bearer {token}"}
    body = client.get(f"/api/v1/rounds/{quiet.id}", headers=headers).json()
    assert len(body["warnings"]) == 2
    assert client.get(f"/api/v1/rounds/{fine.id}", headers=headers).json()["warnings"] == []
    login(client, user)
    page = " ".join(html.unescape(client.get("/jobs").text).split())
    assert page.count(">learned little<") == 1  # the badge, on one round of two
    assert "The policy barely moved from its SFT model (KL 0.010 nats)" in page


def test_a_round_on_the_same_feedback_as_the_last_says_it_repeats_it(client, db, monkeypatch):
    from tests.jobs.loop import label_everything, labeler_token, seed_tasks

    monkeypatch.setattr(jobs, "dispatch", lambda ids: list(ids))
    seed_tasks(db)
    label_everything(client, labeler_token(db))
    staff = make_user(db, Role.researcher)
    _, token = auth.create_token(db=db, user=staff, name="t")
    headers = {"Authorization": f"Bearer {token}"}
    first = rounds.create_round(db=db, user=None, stages=["sft", "rm"])
    first.state = "succeeded"
    db.flush()
    login(client, staff)
    assert f"No ranking or demonstration has come in since round {first.id}" in \
        html.unescape(client.get("/jobs").text)

    resp = client.post("/api/v1/rounds", json={"stages": ["sft", "rm"]}, headers=headers)
    assert resp.status_code == 202, resp.text
    again = resp.json()
    assert any(f"repeats round {first.id}'s models" in w for w in again["warnings"])
    # other settings train other models: no warning
    db.get(Round, again["round_id"]).state = "succeeded"
    other = rounds.create_round(db=db, user=None, stages=["sft", "rm"],
                                config={"rm": {"epochs": 3}})
    assert feedback.repeat_of(db=db, rnd=other) is None
    other.state = "cancelled"
    # new feedback: a round started now has something new to learn from
    seed_tasks(db, n_demos=1, n_ranks=0)
    label_everything(client, labeler_token(db), kinds=("demonstrate",))
    assert "No ranking or demonstration has come in" not in client.get("/jobs").text
    fresh = rounds.create_round(db=db, user=None, stages=["sft", "rm"])
    assert feedback.repeat_of(db=db, rnd=fresh) is None
