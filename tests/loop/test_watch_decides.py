"""The watch's flags reach the rounds through the slot they offer: a round that promotes
"if_better" and that people prefer is still held for a person when the watch flags it."""

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
