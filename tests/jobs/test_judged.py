"""Rounds judged by people: a round's campaign settings are checked before anything is
written, an "if_better" round waits for its campaign, the last judgment decides it, the
watch's flags hold it for a person, and a waiting round is promoted or dismissed by hand."""

import html
from typing import Any

import pytest
from sqlalchemy import func, select

from app.auth import service as auth
from app.auth.models import Role
from app.evaluation import service as campaigns
from app.evaluation.models import Evaluation, EvaluationItem
from app.jobs import service as jobs
from app.jobs.models import Job
from app.registry.models import ModelVersion
from app.rounds import judged
from app.rounds import service as rounds
from app.rounds.models import Round
from tests.evaluation.factories import make_prompts, make_version
from tests.factories import login, make_user
from tests.jobs.judging import trained_round
from tests.jobs.loop import label_everything, labeler_token, seed_tasks
from tests.jobs.test_status import _scope


@pytest.fixture(autouse=True)
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    """Job ids sent after a commit, recorded (the test's transaction never commits)."""
    calls: list[list[int]] = []
    monkeypatch.setattr(jobs, "dispatch", lambda ids: calls.append(list(ids)) or list(ids))
    return calls


@pytest.fixture
def staff(db):  # type: ignore[no-untyped-def]
    _, token = auth.create_token(db=db, user=make_user(db, Role.researcher))
    return {"Authorization": f"Bearer {token}"}


def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(select(func.count()).select_from(model)) or 0


def _fed(db, client, *, held_out: int = 1, test_prompts: int = 3) -> None:  # type: ignore[no-untyped-def]
    seed_tasks(db)
    label_everything(client, labeler_token(db))
    for _ in range(held_out):
        make_user(db, Role.labeler, held_out=True)
    make_prompts(db, test_prompts)


@pytest.mark.parametrize("body, words", [
    ({"promote": "yes"}, "promote"),
    ({"promote": 1}, "promote"),
    ({"promote": "if_better", "evaluate": {"n_prompts": 0}}, "n_prompts"),
    ({"evaluate": {"judges": "everyone"}}, "judges"),
    ({"evaluate": {"overlap": 2, "color": "red"}}, "color"),
    ({"evaluate": "all"}, "evaluate"),
    ({"stages": ["sft", "rm"], "evaluate": {}}, "train none"),
    ({"stages": ["sft", "rm"], "promote": "if_better"}, "train none"),
    ({"evaluate": {"n_prompts": 4}}, "Only 3 test prompts are there"),
])
def test_a_bad_evaluate_or_promote_is_refused_and_creates_nothing(client, db, staff, body,
                                                                 words):
    _fed(db, client)
    resp = client.post("/api/v1/rounds", json=body, headers=staff)
    assert resp.status_code == 422 and words in resp.text, resp.text
    assert _count(db, Round) == 0 and _count(db, Job) == 0 and _count(db, Evaluation) == 0


def test_if_better_with_nobody_to_judge_is_refused(client, db, staff):
    _fed(db, client, held_out=0)
    resp = client.post("/api/v1/rounds", json={"promote": "if_better"}, headers=staff)
    assert resp.status_code == 422 and "no held-out labelers" in resp.json()["detail"]
    assert _count(db, Round) == 0 and _count(db, Job) == 0
    # every labeler may judge when asked: then the round is made
    resp = client.post("/api/v1/rounds", json={"promote": "if_better",
                                               "evaluate": {"judges": "all"}}, headers=staff)
    assert resp.status_code == 202, resp.text


def test_an_if_better_round_evaluates_and_plans_no_promotion_yet(client, db, staff):
    _fed(db, client)
    resp = client.post("/api/v1/rounds", json={
        "promote": "if_better", "evaluate": {"n_prompts": 2, "overlap": 2},
        "generate": {"k": 4, "n_prompts": 3}}, headers=staff)
    assert resp.status_code == 202, resp.text
    assert [j["kind"] for j in resp.json()["jobs"]] == ["export", "sft", "rm", "ppo", "evaluate"]
    shown = client.get(f"/api/v1/rounds/{resp.json()['round_id']}", headers=staff).json()
    assert shown["promote"] == "if_better"
    assert shown["evaluate"] == {"n_prompts": 2, "overlap": 2, "judges": "held_out"}
    evaluate = next(j for j in shown["jobs"] if j["kind"] == "evaluate")
    assert evaluate["config"] == shown["evaluate"] and evaluate["queue"] == "gpu"
    plain = client.post("/api/v1/rounds", json={"promote": True}, headers=staff)
    assert plain.status_code == 409  # one round at a time, as before


def test_decide_promotes_only_above_half_and_never_past_a_flag():
    def done(win: float, lo: float, hi: float, n: int = 20) -> dict[str, Any]:
        return {"state": "complete", "row": {"win_rate": win, "ci95": [lo, hi], "n": n},
                "judgments": n, "required": n, "closed_reason": None}

    assert judged.decide(campaign=done(.8, .6, .9), against="p1", flags=[]).action == "promote"
    assert judged.decide(campaign=done(.7, .5, .85), against="p1", flags=[]).action == "keep"
    assert judged.decide(campaign=done(.6, .4, .8), against="p1", flags=[]).action == "keep"
    held = judged.decide(campaign=done(.9, .7, .97), against="p1", flags=["kl_bound"])
    assert held.action == "hold" and "kl_bound" in held.reason
    labeling = {**done(.9, .7, .97), "state": "labeling", "judgments": 3}
    assert judged.decide(campaign=labeling, against="p1", flags=[]).action == "wait"
    empty = {**done(.5, .5, .5), "row": {"win_rate": None, "ci95": None, "n": 0},
             "closed_reason": "Nothing to judge: 3 pairs identical."}
    kept = judged.decide(campaign=empty, against="sft-r1", flags=[])
    assert kept.action == "keep" and "identical" in kept.reason


def _judge_all_for(client, db, ev, *, policy_wins: bool) -> None:  # type: ignore[no-untyped-def]
    items = db.scalars(select(EvaluationItem).where(EvaluationItem.evaluation_id == ev.id)).all()
    for _ in items:
        csrf = login(client, make_user(db, Role.labeler, held_out=True))
        task = client.get("/api/v1/tasks/next?kind=compare").json()
        item = next(i for i in items if i.task_id == task["task_id"])
        choice = item.candidate_id if policy_wins else item.baseline_candidate_id
        resp = client.post(f"/api/v1/tasks/{task['task_id']}/submit", json={
            "assignment_id": task["assignment_id"], "idempotency_key": f"judge-{item.id}-key",
            "seconds_spent": 4, "choice": choice}, headers={"X-CSRF-Token": csrf})
        assert resp.status_code in (200, 201), resp.text


def test_the_last_judgment_promotes_a_round_people_prefer(client, db, sent):
    rnd, ev = trained_round(db)
    assert rounds.settle(db=db, round_id=rnd.id) == []
    assert rnd.state == "awaiting_judgment" and rnd.decision["action"] == "waiting"
    assert rounds.live_round(db=db) is rnd  # holds the slot: no other round starts meanwhile
    with pytest.raises(Exception, match="waiting for people to judge"):
        rounds.create_round(db=db, user=None, stages=["ppo"])
    _judge_all_for(client, db, ev, policy_wins=True)
    db.refresh(ev)
    db.refresh(rnd)
    assert ev.state == "complete"
    assert rnd.decision["action"] == "promoted" and rnd.decision["by"] == "rule"
    assert rnd.decision["ci95"][0] > 0.5 and rnd.state == "running"
    promote = db.scalars(select(Job).where(Job.round_id == rnd.id, Job.kind == "promote")).one()
    assert promote.state == "queued" and promote.position == 3
    assert sent[-1] == [promote.id]  # sent once the judgment's transaction committed


def test_a_round_people_do_not_prefer_is_kept_and_ends(client, db):
    rnd, ev = trained_round(db)
    rounds.settle(db=db, round_id=rnd.id)
    _judge_all_for(client, db, ev, policy_wins=False)
    db.refresh(rnd)
    assert rnd.state == "succeeded" and rnd.decision["action"] == "kept"
    assert "not shown better" in rnd.decision["reason"]
    assert not db.scalars(select(Job).where(Job.round_id == rnd.id, Job.kind == "promote")).all()


def test_a_first_round_with_only_identical_outputs_is_decided_at_once(db):
    rnd, ev = trained_round(db, previous=False, identical=True)
    assert ev.state == "complete" and ev.identical_pairs == 8
    rounds.settle(db=db, round_id=rnd.id)
    assert rnd.state == "succeeded" and rnd.decision["action"] == "kept"
    assert "identical" in rnd.decision["reason"]
    assert rnd.decision["evaluation_id"] == ev.id  # the first round is decided against SFT


def test_a_flagged_round_waits_for_a_person_who_promotes_it(client, db, staff, monkeypatch,
                                                            sent):
    monkeypatch.setattr(judged, "round_flags", lambda *, db, round_id: ["rm_up_people_flat"])
    rnd, ev = trained_round(db)
    rounds.settle(db=db, round_id=rnd.id)
    _judge_all_for(client, db, ev, policy_wins=True)
    db.refresh(rnd)
    assert rnd.state == "awaiting_judgment" and rnd.decision["action"] == "held"
    assert "rm_up_people_flat" in rnd.decision["reason"]
    labeler = {"Authorization": f"Bearer {labeler_token(db)}"}
    assert client.post(f"/api/v1/rounds/{rnd.id}/promote", headers=labeler).status_code == 403
    page = client.get("/jobs", headers=staff).text
    assert f'action="/jobs/rounds/{rnd.id}/promote"' in page and "rm_up_people_flat" in page
    resp = client.post(f"/api/v1/rounds/{rnd.id}/promote", headers=staff)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["state"] == "running" and body["decision"]["action"] == "promoted"
    assert "by hand" in body["decision"]["reason"] and body["promote"] == "if_better"
    promote = next(j for j in body["jobs"] if j["kind"] == "promote")
    assert sent[-1] == [promote["id"]]
    again = client.post(f"/api/v1/rounds/{rnd.id}/promote", headers=staff)
    assert again.status_code == 409 and "not waiting" in again.json()["detail"]


def test_a_waiting_round_is_dismissed_from_the_page_with_csrf(client, db):
    rnd, _ = trained_round(db)
    rounds.settle(db=db, round_id=rnd.id)
    csrf = login(client, make_user(db, Role.researcher))
    assert client.post(f"/jobs/rounds/{rnd.id}/dismiss").status_code == 403
    db.refresh(rnd)
    assert rnd.state == "awaiting_judgment"
    resp = client.post(f"/jobs/rounds/{rnd.id}/dismiss", data={"csrf_token": csrf},
                       follow_redirects=False)
    assert resp.status_code == 303
    db.refresh(rnd)
    assert rnd.state == "succeeded" and rnd.decision["action"] == "dismissed"
    assert rounds.live_round(db=db) is None


GENERATE = {"k": 4, "n_prompts": 8}


def _fresh_generate(db, rnd) -> Job:  # type: ignore[no-untyped-def]
    """The generate job a decided round appended, checked to sample the round's policy."""
    job = db.scalars(select(Job).where(Job.round_id == rnd.id, Job.kind == "generate")).one()
    policy = db.scalars(select(Job).where(Job.round_id == rnd.id, Job.kind == "ppo")).one()
    policy_id = policy.outputs["model_version_id"]
    mix = job.config["mix"]
    assert [m["temperature"] for m in mix if m["model_id"] == policy_id] == [0.7, 1.0]
    assert job.config["k"] == 4 and job.state == "queued" and rnd.state == "running"
    return job


def test_a_kept_round_still_samples_fresh_candidates_its_policy_among_them(client, db, sent,
                                                                         monkeypatch):
    import app.rounds.status as status

    monkeypatch.setattr(status, "session_scope", _scope(db))
    rnd, ev = trained_round(db, generate=GENERATE)
    rounds.settle(db=db, round_id=rnd.id)
    _judge_all_for(client, db, ev, policy_wins=False)
    db.refresh(rnd)
    assert rnd.decision["action"] == "kept"
    job = _fresh_generate(db, rnd)
    assert sent[-1] == [job.id]
    assert (f"round {rnd.id} kept, sampling fresh candidates (its policy among them) for "
            "people to rank: waiting for a worker") in status.status_line()
    # the first round has no active SFT: the round's own SFT writes the reference answers
    policy = db.get(ModelVersion, job.config["mix"][0]["model_id"])
    assert job.config["mix"][-1] == {"model_id": policy.parent_id, "temperature": 1.0}
    assert not db.scalars(select(Job).where(Job.round_id == rnd.id, Job.kind == "promote")).all()


def test_a_dismissed_round_runs_its_generate_stage_but_promotes_nothing(client, db, staff,
                                                                          sent):
    rnd, _ = trained_round(db, generate=GENERATE)
    rounds.settle(db=db, round_id=rnd.id)
    resp = client.post(f"/api/v1/rounds/{rnd.id}/dismiss", headers=staff)
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "running" and resp.json()["decision"]["action"] == "dismissed"
    job = _fresh_generate(db, rnd)
    assert sent[-1] == [job.id]
    assert not db.scalars(select(Job).where(Job.round_id == rnd.id, Job.kind == "promote")).all()
    again = client.post(f"/api/v1/rounds/{rnd.id}/dismiss", headers=staff)
    assert again.status_code == 409


def test_after_a_promoted_round_the_fresh_mix_holds_the_active_models_and_the_new_policy(db):
    from app.registry import service as registry

    active_policy, active_sft = make_version(db, "policy"), make_version(db, "sft")
    registry.move_alias(db=db, alias="policy:active", version=active_policy, user_id=None,
                        action="promote")
    registry.move_alias(db=db, alias="sft:active", version=active_sft, user_id=None,
                        action="promote")
    rnd, _ = trained_round(db, generate=GENERATE)
    policy_id = db.scalars(select(Job).where(Job.round_id == rnd.id, Job.kind == "ppo")
                           ).one().outputs["model_version_id"]
    assert judged.unpromoted_mix(db, rnd) == [
        {"model_id": active_policy.id, "temperature": 0.7},
        {"model_id": policy_id, "temperature": 0.7}, {"model_id": policy_id, "temperature": 1.0},
        {"model_id": active_sft.id, "temperature": 1.0}]


def test_a_dismissed_round_keeps_the_models_its_generate_names(client, db, staff):
    sft = make_version(db, "sft")
    rnd, _ = trained_round(db, generate=GENERATE | {"model_id": sft.id})
    rounds.settle(db=db, round_id=rnd.id)
    assert client.post(f"/api/v1/rounds/{rnd.id}/dismiss", headers=staff).status_code == 200
    job = db.scalars(select(Job).where(Job.round_id == rnd.id, Job.kind == "generate")).one()
    assert job.config["model_id"] == sft.id and "mix" not in job.config


def test_what_the_hook_missed_is_decided_by_the_sweeps_step(db):
    rnd, ev = trained_round(db, n=8)
    rounds.settle(db=db, round_id=rnd.id)
    # the campaign completes with no hook listening (as if its process died)
    hooks = list(campaigns.ON_COMPLETE)
    campaigns.ON_COMPLETE.clear()
    try:
        campaigns.close(db=db, evaluation_id=ev.id, user=None)
    finally:
        campaigns.ON_COMPLETE[:] = hooks
    assert rnd.state == "awaiting_judgment" and rnd.decision["action"] == "waiting"
    assert judged.settle_judgment(db=db, rnd=rnd) == []  # what sweep() runs per round
    assert rnd.state == "succeeded" and rnd.decision["action"] == "kept"
    assert "closed early" in rnd.decision["reason"].lower()


def test_the_trigger_form_starts_an_if_better_round_with_its_campaign(client, db):
    _fed(db, client)
    csrf = login(client, make_user(db, Role.researcher))
    page = client.get("/jobs").text
    assert 'name="promote_if_better"' in page and 'name="eval_n_prompts"' in page
    resp = client.post("/jobs/rounds", data={
        "csrf_token": csrf, "stages": ["sft", "rm", "ppo"], "promote_if_better": "on",
        "eval_n_prompts": "2", "eval_judges": "all"}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    rnd = db.scalars(select(Round)).one()
    assert rnd.promote is False and rnd.promote_if_better
    assert rnd.evaluate == {"n_prompts": 2, "overlap": 1, "judges": "all"}


@pytest.mark.parametrize("form, sentence", [
    ({"promote": "on", "promote_if_better": "on"}, "not both"),
    ({"evaluate": "on", "eval_n_prompts": "0"}, "evaluate n_prompts"),
    ({"evaluate": "on", "eval_judges": "robots"}, "evaluate judges"),
    ({"evaluate": "on", "eval_n_prompts": "9"}, "Only 3 test prompts are there"),
])
def test_a_bad_campaign_in_the_trigger_form_says_why_and_starts_nothing(client, db, form,
                                                                        sentence):
    _fed(db, client)
    csrf = login(client, make_user(db, Role.researcher))
    resp = client.post("/jobs/rounds", data={"csrf_token": csrf, "stages": ["sft", "rm", "ppo"],
                                             **form}, follow_redirects=False)
    assert resp.status_code == 422 and sentence in html.unescape(resp.text), resp.text
    assert _count(db, Round) == 0 and _count(db, Job) == 0


def test_train_round_on_the_command_line_takes_the_same_campaign(committed_db):
    from typer.testing import CliRunner

    from app.cli import root
    from tests.factories import make_prompt

    make_prompt(committed_db)
    make_prompts(committed_db, 2)
    committed_db.commit()
    runner = CliRunner()
    bad = runner.invoke(root, ["train", "round", "--stages", "ppo", "--promote-if-better",
                               "--judges", "robots"])
    assert bad.exit_code == 1 and "judges" in bad.output
    nobody = runner.invoke(root, ["train", "round", "--stages", "ppo", "--promote-if-better"])
    assert nobody.exit_code == 1 and "no held-out labelers" in nobody.output
    assert _count(committed_db, Round) == 0
    make_user(committed_db, Role.labeler, held_out=True)
    committed_db.commit()
    out = runner.invoke(root, ["train", "round", "--stages", "ppo", "--promote-if-better",
                               "--evaluate-prompts", "2", "--json"])
    assert out.exit_code == 0, out.output
    rnd = committed_db.scalars(select(Round)).one()
    assert rnd.promote_if_better and rnd.evaluate == {"n_prompts": 2, "overlap": 1,
                                                      "judges": "held_out"}
    assert '"promote": "if_better"' in out.output


def test_the_status_line_says_what_a_waiting_round_waits_for_and_where_to_act(
        client, db, monkeypatch):
    import app.rounds.status as status

    monkeypatch.setattr(status, "session_scope", _scope(db))
    monkeypatch.setattr(judged, "round_flags", lambda *, db, round_id: ["kl_over_bound"])
    rnd, ev = trained_round(db)
    rounds.settle(db=db, round_id=rnd.id)
    required = db.scalar(select(func.count()).select_from(EvaluationItem)
                         .where(EvaluationItem.evaluation_id == ev.id))
    assert f"round {rnd.id} waiting for people: 0 of {required} judgments against " \
           in status.status_line()
    _judge_all_for(client, db, ev, policy_wins=True)
    db.refresh(rnd)
    line = status.status_line()
    assert f"round {rnd.id} held: people prefer it (" in line
    assert "the watch flagged kl_over_bound: promote or dismiss it on /jobs" in line
