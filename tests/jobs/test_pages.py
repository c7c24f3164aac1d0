"""The loop's pages: /jobs (rounds, trigger form, cancel, retry, schedule), /jobs/{id},
/models, /models/{id} (promote, roll back) and /models/compare, for each role, with CSRF,
refusals that show a sentence and change nothing, and model output escaped."""

import html
import re

import pytest
from sqlalchemy import func, select

from app.auth.models import Role
from app.jobs import service as jobs
from app.jobs.models import Job, JobMetric
from app.prompts.models import Candidate
from app.registry import service as registry
from app.registry.models import AliasEvent, ModelVersion
from app.rounds.models import Round, TrainSchedule
from tests.factories import csrf_from, login, make_prompt, make_user
from tests.jobs.loop import SMALL, label_everything, labeler_token, seed_tasks


def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(select(func.count()).select_from(model)) or 0


def _version(db, kind: str, name: str, parent_id=None, metrics=None, job_id=None):  # type: ignore[no-untyped-def]
    v = ModelVersion(kind=kind, name=name, parent_id=parent_id, path=f"/nowhere/{name}",
                     sha256="ab" * 32, config={"lr": 1e-5, "name": name},
                     metrics=metrics or {}, job_id=job_id)
    db.add(v)
    db.flush()
    return v


def _flash(client, path: str = "/jobs") -> str:  # type: ignore[no-untyped-def]
    page = client.get(path).text
    found = re.findall(r'<div class="flash flash-(\w+)" role="status">([^<]*)</div>', page)
    return " | ".join(f"{k}: {html.unescape(m)}" for k, m in found)


@pytest.fixture
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    """The job ids the pages send to the broker (after their commit)."""
    calls: list[list[int]] = []
    monkeypatch.setattr(jobs, "dispatch", lambda ids: calls.append(list(ids)) or list(ids))
    return calls


@pytest.fixture
def data(client, db):  # type: ignore[no-untyped-def]
    """Enough feedback for a round: demonstrations and rankings through the task API."""
    seed_tasks(db)
    label_everything(client, labeler_token(db))
    client.cookies.clear()


@pytest.fixture
def loop_rows(db):  # type: ignore[no-untyped-def]
    """A job with metrics and a log, and base → sft → policy versions."""
    job = jobs.submit(db=db, kind="ppo", config={"steps": 2})
    job.log_tail = "step 1 <b>bold</b>\n"
    db.add(JobMetric(job_id=job.id, step=1, values={"objective/kl": 0.1,
                                                     "objective/scores": 0.5}))
    base = _version(db, "base", "tiny")
    sft = _version(db, "sft", "sft-r1", base.id, {"val_loss": 2.5})
    rm = _version(db, "rm", "rm-r1", sft.id, {"val_accuracy": 0.7})
    policy = _version(db, "policy", "policy-r1", sft.id, {"objective/kl": 0.2, "loss": 1.0},
                      job_id=job.id)
    job.inputs = {"reward_model": {"id": rm.id, "name": rm.name, "path": rm.path}}
    db.flush()
    return {"job": job, "base": base, "sft": sft, "rm": rm, "policy": policy}


@pytest.mark.parametrize("role", [Role.researcher, Role.admin])
def test_every_page_renders_for_staff(client, db, loop_rows, role):
    login(client, make_user(db, role))
    r = loop_rows
    for path in ["/jobs", f"/jobs/{r['job'].id}", "/models", f"/models/{r['policy'].id}",
                 f"/models/compare?a={r['sft'].id}&b={r['policy'].id}", "/models/compare",
                 "/loop"]:
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.text[:500])
    nav = client.get("/jobs").text
    assert 'href="/jobs"' in nav and 'href="/models"' in nav and 'href="/loop"' in nav


def test_labelers_get_403_on_every_page_and_form(client, db, loop_rows):
    csrf = login(client, make_user(db, Role.labeler))
    r = loop_rows
    for path in ["/jobs", f"/jobs/{r['job'].id}", "/models", f"/models/{r['policy'].id}",
                 f"/models/compare?a={r['sft'].id}&b={r['policy'].id}", "/loop",
                 "/api/v1/loop"]:
        assert client.get(path).status_code == 403, path
    for path in ["/jobs/rounds", f"/jobs/{r['job'].id}/cancel", f"/jobs/{r['job'].id}/retry",
                 "/jobs/schedule", f"/models/{r['policy'].id}/promote", "/models/rollback"]:
        assert client.post(path, data={"csrf_token": csrf, "stages": "sft", "kind": "policy"},
                           follow_redirects=False).status_code == 403, path
    labeler_nav = re.findall(r'<nav class="nav".*?</nav>', client.get("/label/mine").text, re.S)[0]
    assert "/jobs" not in labeler_nav and "/loop" not in labeler_nav
    assert db.get(Job, r["job"].id).state == "queued"
    assert registry.alias_target(db=db, alias="policy:active") is None


def test_forms_without_csrf_token_are_refused_and_change_nothing(client, db, loop_rows, data,
                                                                sent):
    login(client, make_user(db, Role.researcher))
    r = loop_rows
    for path, form in [("/jobs/rounds", {"stages": ["sft"]}),
                       (f"/jobs/{r['job'].id}/cancel", {}),
                       ("/jobs/schedule", {"enabled": "on", "every_hours": "2",
                                           "stages": ["sft"]}),
                       (f"/models/{r['policy'].id}/promote", {})]:
        resp = client.post(path, data=form, follow_redirects=False)
        assert resp.status_code == 403, path
        assert "CSRF" in resp.text
    assert _count(db, Round) == 0
    assert db.get(Job, r["job"].id).state == "queued"
    assert not db.scalar(select(TrainSchedule.enabled))
    assert registry.alias_target(db=db, alias="policy:active") is None
    assert sent == []


def test_trigger_form_starts_a_round_with_the_knobs_and_advanced_json(client, db, data, sent):
    csrf = login(client, make_user(db, Role.researcher))
    page = client.get("/jobs").text
    # The knobs show what runs when left empty.
    assert 'name="ppo.kl_coef"' in page and 'name="sft.epochs"' in page
    assert re.search(r'name="rm.lr"[^>]*placeholder="[0-9.e-]+"', page)
    resp = client.post("/jobs/rounds", data={
        "csrf_token": csrf, "stages": ["sft", "rm", "ppo"], "sft.epochs": "2",
        "ppo.kl_coef": "0.05", "advanced": '{"ppo": {"clip": 0.1}, "rm": {"max_len": 64}}',
        "promote": "on", "generate": "on", "gen_k": "5", "gen_n_prompts": "3",
        "gen_overlap": "2"}, follow_redirects=False)
    assert resp.status_code == 303, re.findall(r"flash-error[^>]*>([^<]*)", resp.text)
    rnd = db.scalars(select(Round)).one()
    assert rnd.stages == ["sft", "rm", "ppo"] and rnd.promote
    assert rnd.config == {"sft": {"epochs": 2}, "rm": {"max_len": 64},
                          "ppo": {"kl_coef": 0.05, "clip": 0.1}}
    assert rnd.generate["k"] == 5 and rnd.generate["overlap"] == 2
    kinds = [j.kind for j in db.scalars(select(Job).where(Job.round_id == rnd.id)
                                        .order_by(Job.position))]
    assert kinds == ["export", "sft", "rm", "ppo", "promote", "generate"]
    first = db.scalars(select(Job).where(Job.round_id == rnd.id, Job.position == 0)).one()
    assert sent == [[first.id]]  # only the first stage, after the commit
    assert f"Round {rnd.id} queued" in _flash(client)

    # While it is live the form is disabled with why, and a second round is refused (409).
    page = client.get("/jobs").text
    assert 'id="trigger-disabled"' in page and "<fieldset class=\"plain\" disabled>" in page
    again = client.post("/jobs/rounds", data={"csrf_token": csrf, "stages": ["sft"]},
                        follow_redirects=False)
    assert again.status_code == 409
    assert "A round is already running" in html.unescape(again.text)
    assert _count(db, Round) == 1


@pytest.mark.parametrize(("form", "sentence"), [
    ({"stages": []}, "Tick at least one stage"),
    ({"stages": ["sft"], "sft.epochs": "two"}, "sft.epochs must be a whole number, not 'two'"),
    ({"stages": ["ppo"], "ppo.kl_coef": "nan"}, "ppo.kl_coef must be a finite number"),
    ({"stages": ["sft"], "advanced": "{not json"}, "The advanced settings are not valid JSON"),
    ({"stages": ["sft"], "advanced": "[1, 2]"}, "must be an object of {stage: {field: value}}"),
    ({"stages": ["sft"], "advanced": '{"sft": {"no_such_knob": 1}}'}, "sft has no setting"),
    ({"stages": ["sft"], "advanced": '{"sft": {"out": "/tmp/x"}}'}, "is set by the round itself"),
    ({"stages": ["sft"], "sft.epochs": "2", "advanced": '{"sft": {"epochs": 3}}'},
     "sft.epochs is set both in the form"),
    ({"stages": ["bogus"]}, "Unknown stage(s) bogus"),
    ({"stages": ["sft"], "generate": "on"}, "tick “promote” too"),
    ({"stages": ["sft"], "promote": "on", "generate": "on", "gen_k": "12"},
     "generate: K should be less than or equal to 9"),
])
def test_bad_trigger_form_shows_a_sentence_keeps_the_input_and_starts_nothing(
        client, db, data, sent, form, sentence):
    csrf = login(client, make_user(db, Role.admin))
    resp = client.post("/jobs/rounds", data={"csrf_token": csrf, **form}, follow_redirects=False)
    assert resp.status_code == 422
    shown = html.unescape(resp.text)
    assert sentence in shown
    for key, value in form.items():  # what was typed is still there
        if isinstance(value, str) and key not in ("promote", "generate"):
            assert f'value="{value}"' in shown or f">{value}</textarea>" in shown, key
    assert _count(db, Round) == 0 and _count(db, Job) == 0 and sent == []


def test_round_without_enough_data_says_how_much_is_needed(client, db, sent):
    csrf = login(client, make_user(db, Role.researcher))
    resp = client.post("/jobs/rounds", data={"csrf_token": csrf, "stages": ["sft", "rm"],
                                             "sft.epochs": "3"}, follow_redirects=False)
    assert resp.status_code == 422
    assert "SFT needs at least 6 demonstrations on train-split prompts; there are 0" in resp.text
    assert 'value="3"' in resp.text
    assert _count(db, Round) == 0 and sent == []


def test_cancel_and_retry_buttons(client, db, sent):
    csrf = login(client, make_user(db, Role.researcher))
    job = jobs.submit(db=db, kind="generate", config={"k": 4})
    db.flush()
    page = client.get("/jobs").text
    assert f'action="/jobs/{job.id}/cancel"' in page
    resp = client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": csrf, "next": "/jobs"},
                       follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/jobs"
    db.expire_all()
    assert db.get(Job, job.id).state == "cancelled"
    assert f"Job {job.id} (generate): cancelled" in _flash(client)
    # Cancelling again is refused with a sentence.
    client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": csrf, "next": "https://evil.example"},
                follow_redirects=False)
    assert "there is nothing to cancel" in _flash(client)

    assert f'action="/jobs/{job.id}/retry"' in client.get(f"/jobs/{job.id}").text
    resp = client.post(f"/jobs/{job.id}/retry", data={"csrf_token": csrf},
                       follow_redirects=False)
    assert resp.status_code == 303
    retry = db.scalars(select(Job).where(Job.retry_of_id == job.id)).one()
    assert resp.headers["location"] == f"/jobs/{retry.id}"
    assert retry.attempt == 2 and retry.state == "queued" and sent == [[retry.id]]
    page = client.get(f"/jobs/{job.id}").text
    assert f'action="/jobs/{job.id}/retry"' not in page and f'href="/jobs/{retry.id}"' in page
    client.post(f"/jobs/{job.id}/retry", data={"csrf_token": csrf}, follow_redirects=False)
    assert "already retried" in _flash(client)
    assert _count(db, Job) == 2


def test_open_redirect_is_not_followed(client, db):
    csrf = login(client, make_user(db, Role.researcher))
    job = jobs.submit(db=db, kind="generate", config={})
    db.flush()
    resp = client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": csrf,
                                                       "next": "//evil.example/x"},
                       follow_redirects=False)
    assert resp.headers["location"] == f"/jobs/{job.id}"


def _schedule_fields(page: str) -> dict[str, object]:
    """What the schedule form sends as the page shows it: its text fields, select choices
    and ticked boxes (the stages as a list)."""
    form = page[page.index('id="schedule-form"'):]
    form = form[:form.index("</form>")]
    out: dict[str, object] = dict(re.findall(r'name="(\w+)"[^>]*value="([^"]*)"', form))
    out = {k: v for k, v in out.items() if k not in ("stages", "enabled", "promote",
                                                     "promote_if_better", "evaluate")}
    for box in re.findall(r'<input type="checkbox" name="(\w+)" value="(\w+)" checked', form):
        if box[0] == "stages":
            out.setdefault("stages", []).append(box[1])  # type: ignore[union-attr]
        else:
            out[box[0]] = box[1]
    for name, options in re.findall(r'<select name="(\w+)">(.*?)</select>', form, re.S):
        out[name] = re.search(r'<option value="(\w+)" selected', options).group(1)  # type: ignore[union-attr]
    return out


def test_schedule_editor_keeps_how_rounds_are_judged(client, db):
    """The schedule `up --schedule` writes (promote if people prefer it, a campaign judged
    by all labelers) shows on the form, and saving the form as shown keeps it."""
    from app.rounds import schedule

    csrf = login(client, make_user(db, Role.researcher))
    schedule.update_schedule(db=db, user=None, enabled=True, every_hours=None,
                             min_new_comparisons=700, min_new_demonstrations=None,
                             stages=["sft", "rm", "ppo"], promote="if_better",
                             evaluate={"n_prompts": 30, "overlap": 1, "judges": "all"})
    db.flush()
    fields = _schedule_fields(client.get("/jobs").text)
    assert fields["promote_if_better"] == "on" and fields["evaluate"] == "on"
    assert fields["eval_judges"] == "all" and fields["eval_n_prompts"] == "30"
    saved = client.post("/jobs/schedule", data={**fields, "csrf_token": csrf},
                        follow_redirects=False)
    assert saved.status_code == 303, saved.text
    row = db.scalars(select(TrainSchedule)).one()
    db.refresh(row)
    assert (row.promote_if_better, row.promote, row.min_new_comparisons) == (True, False, 700)
    assert row.evaluate == {"n_prompts": 30, "overlap": 1, "judges": "all"}
    both = client.post("/jobs/schedule", data={**fields, "csrf_token": csrf, "promote": "on"},
                       follow_redirects=False)
    assert both.status_code == 422 and "not both" in html.unescape(both.text)


def test_schedule_editor_saves_and_refuses_nonsense(client, db):
    csrf = login(client, make_user(db, Role.researcher))
    assert "new comparisons" in client.get("/jobs").text
    bad = client.post("/jobs/schedule", data={"csrf_token": csrf, "enabled": "on",
                                              "stages": ["sft"], "min_new_comparisons": ""},
                      follow_redirects=False)
    assert bad.status_code == 422
    assert "An enabled schedule needs a period" in html.unescape(bad.text)
    bad = client.post("/jobs/schedule", data={"csrf_token": csrf, "enabled": "on",
                                              "stages": ["rm"], "every_hours": "soon"},
                      follow_redirects=False)
    assert bad.status_code == 422 and 'value="soon"' in bad.text
    assert "every N hours must be a finite number" in html.unescape(bad.text)
    bad = client.post("/jobs/schedule", data={"csrf_token": csrf, "enabled": "on",
                                              "stages": ["rm"], "min_new_comparisons": "0"},
                      follow_redirects=False)
    assert bad.status_code == 422 and "between 1 and 10,000,000" in bad.text
    row = db.scalars(select(TrainSchedule)).first()
    assert row is None or not row.enabled

    ok = client.post("/jobs/schedule", data={
        "csrf_token": csrf, "enabled": "on", "stages": ["rm", "ppo"], "every_hours": "12",
        "min_new_comparisons": "500", "promote": "on"}, follow_redirects=False)
    assert ok.status_code == 303
    row = db.scalars(select(TrainSchedule)).one()
    assert (row.enabled, row.every_hours, row.min_new_comparisons, row.stages, row.promote) == (
        True, 12.0, 500, ["rm", "ppo"], True)
    page = client.get("/jobs").text
    assert 'name="every_hours" inputmode="decimal" value="12"' in page


def test_job_page_shows_state_log_escaped_and_the_metrics_api_feeds_its_charts(client, db,
                                                                             loop_rows):
    login(client, make_user(db, Role.researcher))
    job = loop_rows["job"]
    page = client.get(f"/jobs/{job.id}").text
    assert "step 1 &lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert '"live": true' in page and "/static/jobs.js" in page and "chart.umd.js" in page
    assert f'href="/models/{loop_rows["policy"].id}"' in page  # the version it registered
    series = client.get(f"/api/v1/jobs/{job.id}/metrics").json()["series"]
    assert series == {"objective/kl": [[1, 0.1]], "objective/scores": [[1, 0.5]]}
    assert client.get("/jobs/999999").status_code == 404


def test_models_pages_show_lineage_aliases_and_escaped_candidates(client, db, loop_rows):
    login(client, make_user(db, Role.researcher))
    r = loop_rows
    prompt = make_prompt(db, "a prompt <i>here</i>")
    db.add(Candidate(prompt_id=prompt.id, text="<script>alert(1)</script>",
                     model_version_id=r["policy"].id, sampling_params={"temperature": 0.7}))
    db.flush()
    page = client.get(f"/models/{r['policy'].id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "&lt;i&gt;here&lt;/i&gt;" in page
    assert re.search(r'id="n-generated">1<', page)
    lineage = re.search(r'<ol class="lineage".*?</ol>', page, re.S).group(0)
    assert lineage.index("tiny") < lineage.index("sft-r1") < lineage.index("policy-r1")
    assert re.search(rf'href="/models/{r["rm"].id}" id="lineage-rm">rm-r1<', page)
    assert f'href="/api/v1/models/{r["policy"].id}/download"' in page
    assert f'href="/jobs/{r["job"].id}"' in page
    listing = client.get("/models").text
    assert "Policies" in listing and "SFT models" in listing and "policy-r1" in listing


def test_promote_rollback_and_refusals(client, db, loop_rows, sent):
    researcher = make_user(db, Role.researcher)
    csrf = login(client, researcher)
    r = loop_rows
    second = _version(db, "policy", "policy-r2", r["sft"].id, {"objective/kl": 0.3, "loss": 0.8})
    for v in (r["policy"], second):
        resp = client.post(f"/models/{v.id}/promote", data={"csrf_token": csrf},
                           follow_redirects=False)
        assert resp.status_code == 303
        assert f"{v.name} is now policy:active" in _flash(client, f"/models/{v.id}")
    assert registry.alias_target(db=db, alias="policy:active").id == second.id
    page = client.get(f"/models/{second.id}").text
    assert "this is policy:active" in page and "policy:active" in page
    listing = client.get("/models").text
    assert "Roll back policy:active to policy-r1" in listing
    assert listing.count("<td>promote</td>") == 2
    assert listing.count(f"<td>{researcher.email}</td>") == 2  # who moved it

    # Refused, with a sentence, changing nothing.
    client.post(f"/models/{second.id}/promote", data={"csrf_token": csrf}, follow_redirects=False)
    assert "already policy:active" in _flash(client, "/models")
    client.post(f"/models/{r['base'].id}/promote", data={"csrf_token": csrf},
                follow_redirects=False)
    assert "only sft, rm and policy versions are promoted" in _flash(client, "/models")
    client.post("/models/rollback", data={"csrf_token": csrf, "kind": "base"},
                follow_redirects=False)
    assert "Unknown kind 'base'" in html.unescape(_flash(client, "/models"))
    client.post(f"/models/{r['sft'].id}/promote", data={"csrf_token": csrf, "generate": "on"},
                follow_redirects=False)
    assert "Only a promoted policy generates" in _flash(client, "/models")
    assert registry.alias_target(db=db, alias="sft:active") is None
    assert _count(db, AliasEvent) == 2 and sent == []

    resp = client.post("/models/rollback", data={"csrf_token": csrf, "kind": "policy"},
                       follow_redirects=False)
    assert resp.headers["location"] == f"/models/{r['policy'].id}"
    assert registry.alias_target(db=db, alias="policy:active").id == r["policy"].id


def test_promote_with_generation_queues_a_generate_job(client, db, loop_rows, sent):
    csrf = login(client, make_user(db, Role.researcher))
    policy = loop_rows["policy"]
    client.post(f"/models/{policy.id}/promote", data={
        "csrf_token": csrf, "generate": "on", "gen_k": "x"}, follow_redirects=False)
    assert "generate k must be a whole number" in _flash(client, "/models")
    assert registry.alias_target(db=db, alias="policy:active") is None  # nothing half-done
    resp = client.post(f"/models/{policy.id}/promote", data={
        "csrf_token": csrf, "generate": "on", "gen_k": "5", "gen_n_prompts": "7"},
        follow_redirects=False)
    assert resp.status_code == 303
    job = db.scalars(select(Job).where(Job.kind == "generate")).one()
    assert job.config["k"] == 5 and job.config["n_prompts"] == 7 and sent == [[job.id]]
    assert registry.alias_target(db=db, alias="policy:active").id == policy.id


def test_compare_shows_both_versions_side_by_side(client, db, loop_rows):
    login(client, make_user(db, Role.researcher))
    r = loop_rows
    second = _version(db, "policy", "policy-r2", r["sft"].id, {"objective/kl": 0.3, "loss": 0.8})
    page = client.get(f"/models/compare?a={r['policy'].id}&b={second.id}").text
    table = re.search(r'<table class="table" id="compare">.*?</table>', page, re.S).group(0)
    assert "objective/kl" in table and "+0.1" in table and "-0.2" in table
    assert "policy-r1" in table and "policy-r2" in table
    assert client.get(f"/models/compare?a={r['policy'].id}&b=999999").status_code == 404
    # A version's page offers the versions of its own kind first.
    select_b = re.search(r'<select name="b">(.*?)</select>',
                         client.get(f"/models/{r['policy'].id}").text, re.S).group(1)
    assert select_b.lstrip().startswith(f'<option value="{second.id}"')
    assert client.get("/models/compare?a=abc").status_code == 422


def test_round_config_from_the_loop_helpers_is_accepted_as_advanced_json(client, db, data,
                                                                          sent):
    import json

    csrf = login(client, make_user(db, Role.researcher))
    resp = client.post("/jobs/rounds", data={"csrf_token": csrf, "stages": ["sft", "rm", "ppo"],
                                             "advanced": json.dumps(SMALL)},
                       follow_redirects=False)
    assert resp.status_code == 303, re.findall(r"flash-error[^>]*>([^<]*)", resp.text)
    assert db.scalars(select(Round)).one().config["ppo"]["steps"] == 2
    assert csrf_from(client.get("/jobs").text) == csrf


def test_step_events_after_a_progress_bar_on_the_same_line_still_reach_the_charts(tmp_path):
    # stderr (a progress bar, no newline) and stdout (the events) share the child's pipe.
    import io
    from collections import deque

    from app.jobs.child import _read
    from app.jobs.kinds import JobContext

    ctx = JobContext(job_id=1, kind="sft", config={}, inputs={}, workdir=tmp_path)
    out = io.StringIO('sft:  50%|#  | 1/2{"event": "step", "step": 1, "total": 2, '
                      '"metrics": {"loss": 3.5, "val_loss": 3.25}}\n'
                      '{"event": "step", "step": 2, "total": 2, "metrics": {"loss": 3.0}}\n'
                      "plain line\n")
    _read(ctx, out, deque())
    progress, metrics, lines = ctx.report.take()
    assert metrics == [(1, {"loss": 3.5, "val/loss": 3.25}), (2, {"loss": 3.0})]
    assert progress == 1.0
    assert lines == ["sft:  50%|#  | 1/2", "plain line"]


def test_broker_down_refuses_a_round_with_503_and_says_so(client, db, data, sent, monkeypatch):
    monkeypatch.setattr(jobs, "broker_available", lambda: False)
    csrf = login(client, make_user(db, Role.researcher))
    assert "The job broker (Redis) cannot be reached" in client.get("/jobs").text
    resp = client.post("/jobs/rounds", data={"csrf_token": csrf, "stages": ["sft"],
                                             "sft.epochs": "1"}, follow_redirects=False)
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) > 0
    assert "labeling keeps working" in resp.text and 'value="1"' in resp.text
    assert _count(db, Round) == 0 and sent == []


def test_promoting_a_policy_with_no_human_evaluation_asks_for_confirmation(client, db,
                                                                        loop_rows):
    login(client, make_user(db, Role.researcher))
    page = client.get(f"/models/{loop_rows['policy'].id}").text
    assert 'id="promote-warning"' in page and "no judged evaluation" in page
    assert "No blind comparison includes this version yet" in page
    sft_page = client.get(f"/models/{loop_rows['sft'].id}").text
    assert 'id="promote-warning"' not in sft_page  # only policies are judged


def test_compare_marks_the_better_side_by_each_metrics_direction(client, db, loop_rows):
    login(client, make_user(db, Role.researcher))
    sft = loop_rows["sft"]
    slow = _version(db, "policy", "p-slow", sft.id, {
        "train_seconds": 90.0, "gen_time_share": 0.6, "no_eos_share": 0.3, "response_len": 80,
        "val_accuracy": 0.6, "objective/kl": 0.2})
    fast = _version(db, "policy", "p-fast", sft.id, {
        "train_seconds": 30.0, "gen_time_share": 0.2, "no_eos_share": 0.1, "response_len": 40,
        "val_accuracy": 0.7, "objective/kl": 0.1})
    page = client.get(f"/models/compare?a={slow.id}&b={fast.id}").text
    rows = dict(re.findall(r'<th class="mono">([^<]+)</th>\s*<td class="num ([a-z]*)">', page))
    # Column A's class: "better" only where A (the slow one) wins, which it never does here.
    assert rows == {k: "" for k in ("gen_time_share", "no_eos_share", "objective/kl",
                                     "response_len", "train_seconds", "val_accuracy")}
    b_cells = dict(re.findall(
        r'<th class="mono">([^<]+)</th>\s*<td class="num [a-z]*">[^<]*</td>\s*'
        r'<td class="num ([a-z]*)">', page))
    assert b_cells == {"gen_time_share": "better", "no_eos_share": "better",
                       "objective/kl": "better", "train_seconds": "better",
                       "val_accuracy": "better", "response_len": ""}


def test_a_first_policy_is_compared_with_its_sft_by_default(client, db, loop_rows):
    login(client, make_user(db, Role.researcher))
    r = loop_rows  # base, sft, rm (newer than sft), then the only policy
    select_b = re.search(r'<select name="b">(.*?)</select>',
                         client.get(f"/models/{r['policy'].id}").text, re.S).group(1)
    assert re.findall(r'<option value="(\d+)" selected>', select_b) == [str(r["sft"].id)]
