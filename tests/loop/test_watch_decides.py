"""The watch's flags reach the rounds through the slot they offer: a round that promotes
"if_better" and that people prefer is still held for a person when the watch flags it."""

import pytest

from app.jobs.models import Job
from app.registry.models import ModelVersion
from app.rounds import judged
from app.rounds import service as rounds
from tests.jobs.judging import trained_round
from tests.jobs.test_judged import _judge_all_for


def test_the_watch_is_registered_with_the_rounds_by_importing_it():
    import app.loop.watch as watch

    assert watch.round_flags in judged.FLAG_SOURCES


def test_if_better_holds_a_round_people_prefer_when_its_kl_passes_the_bound(client, db):
    import app.loop.watch  # noqa: F401 - registers, as the web app and the worker do

    rnd, ev = trained_round(db)
    ppo = next(j for j in rounds.current_jobs(db=db, round_id=rnd.id) if j.kind == "ppo")
    policy = db.get(ModelVersion, ppo.outputs["model_version_id"])
    policy.round_id = rnd.id  # as the registry records a version a round trained
    policy.metrics = {**policy.metrics, "test_kl": 55.0}
    db.flush()
    assert "kl_over_bound" in judged.round_flags(db=db, round_id=rnd.id)
    rounds.settle(db=db, round_id=rnd.id)
    _judge_all_for(client, db, ev, policy_wins=True)
    db.refresh(rnd)
    assert rnd.state == "awaiting_judgment" and rnd.decision["action"] == "held"
    assert "kl_over_bound" in rnd.decision["reason"]
    assert not [j for j in rounds.current_jobs(db=db, round_id=rnd.id)
                if isinstance(j, Job) and j.kind == "promote" and j.state == "queued"]


def test_the_simulated_researcher_dismisses_a_held_round_so_the_next_can_start(client, db):
    # `simulate loop --if-better` went on after a held round by starting the next one, which
    # the API refuses (409) while a round waits for a person.
    import app.loop.watch  # noqa: F401 - registers, as the web app and the worker do
    from app.auth import service as auth
    from app.auth.models import Role
    from simulation.loop import Api, LoopError
    from tests.factories import make_user

    rnd, ev = trained_round(db)
    ppo = next(j for j in rounds.current_jobs(db=db, round_id=rnd.id) if j.kind == "ppo")
    db.get(ModelVersion, ppo.outputs["model_version_id"]).metrics = {"test_kl": 55.0}
    db.get(ModelVersion, ppo.outputs["model_version_id"]).round_id = rnd.id
    db.flush()
    rounds.settle(db=db, round_id=rnd.id)
    _judge_all_for(client, db, ev, policy_wins=True)
    db.refresh(rnd)
    assert rnd.decision["action"] == "held"
    _, token = auth.create_token(db=db, user=make_user(db, Role.researcher))
    api = Api.__new__(Api)  # the loop's API client, over the app's own test client
    api.http = client
    client.headers["Authorization"] = f"Bearer {token}"
    with pytest.raises(LoopError, match="promoted or dismissed"):
        api.decide_held(rnd.id, "ignore")
    assert api.decide_held(rnd.id, "dismiss")["state"] != "awaiting_judgment"
    db.refresh(rnd)
    assert rnd.decision["action"] == "dismissed" and rnd.decision["by"]
    with pytest.raises(LoopError, match="HTTP 409"):  # decided once: nothing left to decide
        api.decide_held(rnd.id, "dismiss")
