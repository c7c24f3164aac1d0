"""Researchers make tasks and import model outputs from the Tasks page, with a line report."""

import json

from sqlalchemy import func, select

from app.auth.models import Role
from app.prompts.models import Candidate
from app.queue.models import Task, TaskKind
from tests.factories import login, make_prompt, make_task, make_user


def _tasks(db, kind: TaskKind) -> list[Task]:  # type: ignore[no-untyped-def]
    db.expire_all()
    return list(db.scalars(select(Task).where(Task.kind == kind).order_by(Task.id)))


def test_create_tasks_from_listed_ids_reports_each_line(client, db):
    csrf = login(client, make_user(db, Role.researcher))
    p1, p2 = make_prompt(db), make_prompt(db)
    has_task = make_task(db, TaskKind.demonstrate)
    resp = client.post("/tasks/create", data={
        "csrf_token": csrf, "kind": "demonstrate", "overlap": "2", "priority": "5",
        "ids": f"{p1.id}\n{p2.id}, {p1.id}\nabc\n999999\n{has_task.prompt_id}"})
    assert resp.status_code == 200
    made = [t for t in _tasks(db, TaskKind.demonstrate) if t.id != has_task.id]
    assert sorted(t.prompt_id for t in made) == sorted([p1.id, p2.id])
    assert all(t.required_labels == 2 and t.priority == 5 for t in made)
    assert "Created <strong>2</strong> · skipped <strong>2</strong> · rejected <strong>2</strong>"\
        in resp.text
    for text in ("listed twice", "&#39;abc&#39; is not a prompt id", "there is no prompt 999999",
                 "already has a demonstrate task", f'href="/tasks/{made[0].id}"'):
        assert text in resp.text, text


def test_rank_and_rate_tasks_from_ids(client, db):
    csrf = login(client, make_user(db, Role.admin))
    four = make_task(db, TaskKind.rate)  # a prompt with one output: too few for rank
    rank_src = make_task(db, TaskKind.rank, k=5)  # its prompt and 5 outputs, without a task
    prompt_id, cids, four_pid = rank_src.prompt_id, list(rank_src.candidate_ids), four.prompt_id
    four_cid = four.candidate_ids[0]
    db.expunge(rank_src)  # deleted behind the session's back (SQLite may reuse its id)
    db.execute(Task.__table__.delete().where(Task.id == rank_src.id))
    resp = client.post("/tasks/create", data={"csrf_token": csrf, "kind": "rank",
                                              "ids": f"{prompt_id}\n{four_pid}"})
    assert f"prompt {four_pid} has 1 candidates; a rank task needs 4 to 9" in resp.text
    ranks = _tasks(db, TaskKind.rank)
    assert len(ranks) == 1 and sorted(ranks[0].candidate_ids) == sorted(cids)
    cid = cids[0]
    resp = client.post("/tasks/create", data={"csrf_token": csrf, "kind": "rate",
                                              "ids": f"{cid}, {four_cid}"})
    assert "already has a rate task" in resp.text
    assert [t.candidate_ids for t in _tasks(db, TaskKind.rate)][-1] == [cid]


def test_bad_options_keep_what_was_typed_and_change_nothing(client, db):
    csrf = login(client, make_user(db, Role.researcher))
    p = make_prompt(db)
    before = db.scalar(select(func.count()).select_from(Task))
    resp = client.post("/tasks/create", data={"csrf_token": csrf, "kind": "demonstrate",
                                              "overlap": "lots", "ids": f"{p.id}\n"})
    assert resp.status_code == 422
    assert "Overlap must be a whole number from 1 to 50, not &#39;lots&#39;." in resp.text
    assert f">{p.id}\n</textarea>" in resp.text and 'value="lots"' in resp.text
    assert db.scalar(select(func.count()).select_from(Task)) == before


def test_import_candidates_page_makes_rank_tasks_and_reports_bad_lines(client, db):
    csrf = login(client, make_user(db, Role.researcher))
    rows = [{"prompt": "Name four colours", "candidates": [{"text": t} for t in "abcd"]},
            {"prompt": "Too few", "candidates": [{"text": "x"}]},
            "not json"]
    body = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()
    resp = client.post("/tasks/import-candidates",
                       data={"csrf_token": csrf, "rank_tasks": "on", "overlap": "3"},
                       files={"file": ("c.jsonl", body, "application/x-ndjson")})
    assert resp.status_code == 200 and 'id="candidate-report"' in resp.text
    assert "rank tasks <strong>1</strong>" in resp.text
    assert db.scalar(select(func.count()).select_from(Candidate)) == 5
    ranks = _tasks(db, TaskKind.rank)
    assert len(ranks) == 1 and ranks[0].required_labels == 3
    missing = client.post("/tasks/import-candidates", data={"csrf_token": csrf})
    assert missing.status_code == 422 and "Choose a candidates file" in missing.text
