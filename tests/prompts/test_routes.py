"""Prompt, candidate and use-case endpoints over HTTP."""

import json

from sqlalchemy import func, select

from app.auth import service as auth
from app.auth.models import Role
from app.prompts.models import Candidate, Prompt
from app.queue.models import Task, TaskKind
from tests.factories import login, make_user


def _bearer(db, role=Role.researcher) -> dict[str, str]:
    _, clear = auth.create_token(db=db, user=make_user(db, role), name="t")
    return {"Authorization": f"Bearer {clear}"}


def _prompts(db) -> int:
    return db.scalar(select(func.count()).select_from(Prompt))


def test_import_json_list_reports_counts(client, db):
    resp = client.post("/api/v1/prompts/import", headers=_bearer(db), json=[
        {"text": "Name three rivers in Africa", "category": "open_qa"},
        {"text": "name three rivers in africa!"},
        {"text": ""},
    ])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["accepted"], body["merged"], body["rejected"]) == (1, 1, 1)
    assert body["issues"][1] == {"line": 3, "outcome": "rejected",
                                 "reason": "`text` is missing or empty"}


def test_import_is_staff_only(client, db):
    resp = client.post("/api/v1/prompts/import", headers=_bearer(db, Role.labeler),
                       json=[{"text": "hello"}])
    assert resp.status_code == 403 and _prompts(db) == 0


def test_import_multipart_with_rules_and_strict_failure(client, db):
    headers = _bearer(db)
    good = b'{"text": "Translate good morning into French", "end_user_id": "a"}\n'
    resp = client.post("/api/v1/prompts/import", headers=headers,
                       files={"file": ("p.jsonl", good)},
                       data={"rules": json.dumps({"train_fraction": 0, "valid_fraction": 1})})
    assert resp.status_code == 200 and resp.json()["accepted"] == 1
    assert db.scalar(select(Prompt.split)).value == "valid"
    bad = good.replace(b'"a"', b'"b"').replace(b"French", b"German") + b"{oops\n"
    failed = client.post("/api/v1/prompts/import", headers=headers,
                         files={"file": ("p.jsonl", bad)}, data={"strict": "true"})
    assert failed.status_code == 400
    assert "nothing was imported" in failed.json()["detail"]
    assert failed.json()["report"]["issues"][0]["line"] == 2
    assert _prompts(db) == 1


def test_import_refuses_bad_rules_and_bodies(client, db):
    headers = _bearer(db)
    resp = client.post("/api/v1/prompts/import", headers=headers,
                       json={"prompts": [{"text": "x"}], "rules": {"train_fraction": 2}})
    assert resp.status_code == 422
    resp = client.post("/api/v1/prompts/import", headers=headers, content=b"not json",
                       )
    assert resp.status_code == 400 and _prompts(db) == 0


def test_prompts_page_uploads_and_lists(client, db):
    csrf = login(client, make_user(db, Role.researcher))
    data = b"text,category\nWhat is the capital of Peru?,open_qa\n<b>bold</b> claim,generation\n"
    resp = client.post("/prompts/import", files={"file": ("p.csv", data)},
                       data={"csrf_token": csrf, "form": "page", "split_seed": "s",
                             "scrub_pii": "true"}, follow_redirects=True)
    assert resp.status_code == 200 and "Imported 2 prompts" in resp.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in resp.text and "<b>bold</b>" not in resp.text
    listed = client.get("/prompts", params={"category": "open_qa"})
    assert "capital of Peru" in listed.text and "bold" not in listed.text.split("prompt-list")[1]


def test_list_api_filters_and_counts(client, db):
    headers = _bearer(db)
    client.post("/api/v1/prompts/import", headers=headers, json=[
        {"text": f"prompt about topic {i}", "category": "chat" if i % 2 else "rewrite"}
        for i in range(6)])
    page = client.get("/api/v1/prompts", params={"category": "chat", "limit": 2}, headers=headers)
    assert page.json()["total"] == 3 and len(page.json()["items"]) == 2
    counts = client.get("/api/v1/prompts/counts", headers=headers).json()
    assert counts["category"] == {"chat": 3, "rewrite": 3} and sum(counts["split"].values()) == 6


def test_candidates_import_makes_rank_tasks_once(client, db):
    headers = _bearer(db)
    rows = [
        {"prompt": "Describe a sunset over the sea", "end_user_id": "e1",
         "candidates": [{"text": f"output {i}", "model": "sft-1"} for i in range(5)]
         + [{"text": "output 0"}]},
        {"prompt": "Only three outputs here", "candidates": [{"text": f"c{i}"} for i in range(3)]},
        {"prompt_id": 987654, "candidates": [{"text": "x"}]},
    ]
    body = {"rows": rows, "rank_tasks": True, "overlap": 2}
    first = client.post("/api/v1/candidates/import", headers=headers, json=body)
    assert first.status_code == 200, first.text
    r = first.json()
    assert (r["prompts_created"], r["candidates_created"], r["rank_tasks"], r["rejected"]) == \
        (2, 8, 1, 1)
    again = client.post("/api/v1/candidates/import", headers=headers, json=body).json()
    assert (again["prompts_reused"], again["candidates_created"], again["rank_tasks"]) == (2, 0, 0)
    task = db.scalar(select(Task).where(Task.kind == TaskKind.rank))
    assert task.required_labels == 2 and len(task.candidate_ids) == 5
    assert db.scalar(select(func.count()).select_from(Candidate)) == 8


def test_use_cases_admin_edits_and_labelers_see_active(client, db):
    admin = _bearer(db, Role.admin)
    made = client.post("/api/v1/use-cases", headers=admin,
                       json={"name": "Trip planning", "description": "Plan *trips*"})
    assert made.status_code == 201
    dup = client.post("/api/v1/use-cases", headers=admin, json={"name": "Trip planning"})
    assert dup.status_code == 409
    client.post("/api/v1/use-cases", headers=admin, json={"name": "Recipes"})
    retired = client.patch(f"/api/v1/use-cases/{made.json()['id']}", headers=admin,
                           json={"active": False})
    assert retired.json()["active"] is False
    seen = client.get("/api/v1/use-cases", headers=_bearer(db, Role.labeler)).json()
    assert [u["name"] for u in seen] == ["Recipes"]
    assert client.post("/api/v1/use-cases", headers=_bearer(db, Role.researcher),
                       json={"name": "x"}).status_code == 403


def test_candidates_import_multipart_file(client, db):
    rows = "\n".join(json.dumps({"prompt": f"Question {i} about tides", "candidates": [
        {"text": f"answer {j}"} for j in range(4)]}) for i in range(2))
    resp = client.post("/api/v1/candidates/import", headers=_bearer(db),
                       files={"file": ("c.jsonl", rows.encode())},
                       data={"rank_tasks": "true", "overlap": "2"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["rank_tasks"] == 2
    bad = client.post("/api/v1/candidates/import", headers=_bearer(db),
                      files={"file": ("c.jsonl", rows.encode())}, data={"overlap": "zero"})
    assert bad.status_code == 422
