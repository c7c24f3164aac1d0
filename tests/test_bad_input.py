"""Bad input is a 4xx that changes nothing, on every route that takes it: ids ≥ 2³¹, pages
out of range, dates in year 1 or 9999, NUL characters and lone surrogates in text, JSON
nested 100,000 deep. Each of these once reached the database and answered 500."""

import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import app.models  # noqa: F401 - every table, for the row counts
from app.auth import service as auth
from app.auth.models import Role, User
from app.db import Base
from app.prompts import service as prompts
from app.queue.models import Assignment
from tests.factories import lease, make_task, make_user, rank_body

BIG = 2**31
NUL = "a\\u0000b"  # as JSON escapes: what a client sends
SURROGATE = "a\\ud800b"
DEEP = "[" * 100_000 + "]" * 100_000


@dataclass
class World:
    admin: dict[str, str]
    labeler: dict[str, str]
    assignment: Assignment
    body: dict[str, Any]
    use_case_id: int
    labeler_id: int


@pytest.fixture
def world(db: Session) -> World:
    def bearer(user: User) -> dict[str, str]:
        _, clear = auth.create_token(db=db, user=user, name="t")
        return {"Authorization": f"Bearer {clear}"}

    labeler = make_user(db, Role.labeler)
    task = make_task(db)
    assignment = lease(db, labeler, task)
    use_case = prompts.create_use_case(db=db, name="Brainstorming")
    return World(admin=bearer(make_user(db, Role.admin)), labeler=bearer(labeler),
                 assignment=assignment, body=rank_body(assignment, task),
                 use_case_id=use_case.id, labeler_id=labeler.id)


def _rows(db: Session) -> dict[str, int]:
    """The row count of every table (one query)."""
    tables = Base.metadata.sorted_tables
    counts = db.execute(select(*[select(func.count()).select_from(t).scalar_subquery()
                                 for t in tables])).one()
    return {t.name: n for t, n in zip(tables, counts, strict=True)}


def _json_with(template: dict[str, Any], key: str, raw: str) -> str:
    """A JSON body whose `key` holds the raw JSON text `raw` (escapes kept as sent)."""
    return json.dumps({**template, key: "@@"}).replace('"@@"', raw)


def _escaped(text: str) -> str:
    return f'"{text}"'


def _cases() -> dict[str, Any]:
    """name → (who, method, url, request kwargs) for a World."""
    a = lambda w: w.assignment.id  # noqa: E731
    json_ct = {"Content-Type": "application/json"}
    return {
        # ids ≥ 2³¹ in paths
        "export id": lambda w: ("admin", "GET", f"/api/v1/exports/{BIG}", {}),
        "export download id": lambda w: ("admin", "GET", f"/api/v1/exports/{BIG}/download", {}),
        "assignment id": lambda w: ("labeler", "GET", f"/api/v1/assignments/{BIG}", {}),
        "heartbeat id": lambda w: ("labeler", "POST", f"/api/v1/assignments/{BIG}/heartbeat",
                                   {}),
        "skip id": lambda w: ("labeler", "POST", f"/api/v1/assignments/{BIG}/skip", {}),
        "draft id": lambda w: ("labeler", "PUT", f"/api/v1/assignments/{BIG}/draft",
                               {"json": {"text": "x"}}),
        "draft get id": lambda w: ("labeler", "GET", f"/api/v1/assignments/{BIG}/draft", {}),
        "flag id": lambda w: ("labeler", "POST", f"/api/v1/assignments/{BIG}/flags",
                              {"json": {"reason": "pii"}}),
        "submit task id": lambda w: ("labeler", "POST", f"/api/v1/tasks/{BIG}/submit",
                                     {"json": w.body}),
        "task page id": lambda w: ("labeler", "GET", f"/label/a/{BIG}", {}),
        "token id": lambda w: ("admin", "DELETE", f"/api/v1/tokens/{BIG}", {}),
        "token page id": lambda w: ("admin", "POST", f"/account/tokens/{BIG}/revoke", {}),
        "user id": lambda w: ("admin", "PATCH", f"/api/v1/users/{BIG}", {"json": {"name": "x"}}),
        "user page id": lambda w: ("admin", "POST", f"/admin/users/{BIG}",
                                   {"data": {"role": "admin"}}),
        "use-case id": lambda w: ("admin", "PATCH", f"/api/v1/use-cases/{BIG}",
                                  {"json": {"name": "x"}}),
        "use-case page id": lambda w: ("admin", "POST", f"/admin/use-cases/{BIG}",
                                       {"data": {"name": "x"}}),
        # ids ≥ 2³¹ in bodies
        "export labeler id": lambda w: ("admin", "POST", "/api/v1/exports", {"json": {
            "kind": "rankings", "filters": {"labeler_ids": [BIG]}}}),
        "export model version id": lambda w: ("admin", "POST", "/api/v1/exports", {"json": {
            "kind": "rankings", "filters": {"model_version_id": BIG}}}),
        "submit assignment id": lambda w: ("labeler", "POST",
                                           f"/api/v1/tasks/{w.assignment.task_id}/submit",
                                           {"json": {**w.body, "assignment_id": BIG}}),
        "submit ranking id": lambda w: ("labeler", "POST",
                                        f"/api/v1/tasks/{w.assignment.task_id}/submit",
                                        {"json": {**w.body, "ranking": [[BIG]]}}),
        "bulk prompt ids": lambda w: ("admin", "POST", "/api/v1/tasks/bulk", {"json": {
            "kind": "demonstrate", "prompt_ids": [BIG]}}),
        "bulk candidate ids": lambda w: ("admin", "POST", "/api/v1/tasks/bulk", {"json": {
            "kind": "rate", "candidate_ids": [BIG]}}),
        "bulk rank ids": lambda w: ("admin", "POST", "/api/v1/tasks/bulk", {"json": {
            "kind": "rank", "rank": [{"prompt_id": BIG, "candidate_ids": [1, 2, 3, BIG]}]}}),
        "bulk use-case ids": lambda w: ("admin", "POST", "/api/v1/tasks/bulk", {"json": {
            "kind": "write_prompt", "prompt_kind": "user_based", "use_case_ids": [BIG]}}),
        # pagination and dates
        "negative limit": lambda w: ("admin", "GET", "/api/v1/prompts?limit=-1", {}),
        "huge offset": lambda w: ("admin", "GET", f"/api/v1/prompts?offset={10**20}", {}),
        "page 1e20": lambda w: ("admin", "GET", "/prompts?page=1e20", {}),
        "page 10^20": lambda w: ("admin", "GET", f"/prompts?page={10**20}", {}),
        "agreement year 1 to 9999": lambda w: (
            "admin", "GET", "/api/v1/agreement/summary?since=0001-01-01&until=9999-12-31", {}),
        "agreement page years": lambda w: (
            "admin", "GET", "/agreement?since=0001-01-01&until=9999-12-31", {}),
        "agreement csv years": lambda w: (
            "admin", "GET", "/agreement.csv?since=0001-01-01T00:00:00&until=9999-12-31", {}),
        "export year 1": lambda w: ("admin", "POST", "/api/v1/exports", {"json": {
            "kind": "rankings", "filters": {"since": "0001-01-01T00:00:00"}}}),
        # NUL characters and lone surrogates in text
        **{f"{where} {name}": case
           for name, raw in (("NUL", NUL), ("surrogate", SURROGATE))
           for where, case in {
               "draft": lambda w, raw=raw: (
                   "labeler", "PUT", f"/api/v1/assignments/{a(w)}/draft",
                   {"content": _json_with({"client_ms": 1}, "text", _escaped(raw)),
                    "headers": json_ct}),
               "submit key": lambda w, raw=raw: (
                   "labeler", "POST", f"/api/v1/tasks/{w.assignment.task_id}/submit",
                   {"content": _json_with(w.body, "idempotency_key", _escaped(raw + "x" * 20)),
                    "headers": json_ct}),
               "flag comment": lambda w, raw=raw: (
                   "labeler", "POST", f"/api/v1/assignments/{a(w)}/flags",
                   {"content": _json_with({"reason": "pii"}, "comment", _escaped(raw)),
                    "headers": json_ct}),
               "skip reason": lambda w, raw=raw: (
                   "labeler", "POST", f"/api/v1/assignments/{a(w)}/skip",
                   {"content": _json_with({}, "reason", _escaped(raw)), "headers": json_ct}),
               "token name": lambda w, raw=raw: (
                   "admin", "POST", "/api/v1/tokens",
                   {"content": _json_with({}, "name", _escaped(raw)), "headers": json_ct}),
               "use-case name": lambda w, raw=raw: (
                   "admin", "POST", "/api/v1/use-cases",
                   {"content": _json_with({}, "name", _escaped(raw)), "headers": json_ct}),
               "use-case rename": lambda w, raw=raw: (
                   "admin", "PATCH", f"/api/v1/use-cases/{w.use_case_id}",
                   {"content": _json_with({}, "name", _escaped(raw)), "headers": json_ct}),
               "user name": lambda w, raw=raw: (
                   "admin", "PATCH", f"/api/v1/users/{w.labeler_id}",
                   {"content": _json_with({}, "name", _escaped(raw)), "headers": json_ct}),
               "prompt import": lambda w, raw=raw: (
                   "admin", "POST", "/api/v1/prompts/import",
                   {"content": '{"strict": true, "prompts": [{"text": "' + raw + '"}]}',
                    "headers": json_ct}),
               "prompt import file": lambda w, raw=raw: (
                   "admin", "POST", "/api/v1/prompts/import",
                   {"files": {"file": ("p.jsonl", '{"text": "' + raw + '"}\n')},
                    "data": {"strict": "true"}}),
               "prompt import metadata": lambda w, raw=raw: (
                   "admin", "POST", "/api/v1/prompts/import",
                   {"content": '{"strict": true, "prompts": [{"text": "Hello there", '
                               '"metadata": {"k": "' + raw + '"}}]}', "headers": json_ct}),
           }.items()},
        # JSON nested 100,000 deep
        "prompt import body deep": lambda w: ("admin", "POST", "/api/v1/prompts/import",
                                              {"content": DEEP, "headers": json_ct}),
        "candidate import body deep": lambda w: ("admin", "POST", "/api/v1/candidates/import",
                                                 {"content": DEEP, "headers": json_ct}),
        "bulk body deep": lambda w: ("admin", "POST", "/api/v1/tasks/bulk",
                                     {"content": DEEP, "headers": json_ct}),
        "prompt import file deep": lambda w: (
            "admin", "POST", "/api/v1/prompts/import",
            {"files": {"file": ("p.jsonl", DEEP + "\n")}, "data": {"strict": "true"}}),
        "gold answer deep": lambda w: ("admin", "POST", "/api/v1/tasks/bulk", {
            "content": '{"kind": "rate", "candidate_ids": [1], "gold": true, "gold_answer": '
                       + "[" * 500 + "]" * 500 + "}", "headers": json_ct}),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_4xx_that_changes_nothing(client, db, world, name):
    who, method, url, kwargs = CASES[name](world)
    headers = {**getattr(world, who), **kwargs.pop("headers", {})}
    state = world.assignment.state
    before = _rows(db)
    resp = client.request(method, url, headers=headers, follow_redirects=False, **kwargs)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    if url.startswith("/api/"):
        body = resp.json()
        assert isinstance(body["detail"], str) and body["detail"], body
    db.expire_all()
    assert _rows(db) == before
    assert db.get(Assignment, world.assignment.id).state == state


@pytest.mark.parametrize("bad", ['{"text": "a\\u0000b"}', '{"text": "a\\ud800b"}', DEEP,
                                 '{"text": "ok", "metadata": ' + "[" * 50 + "]" * 50 + "}"],
                         ids=["NUL", "surrogate", "deep", "deep metadata"])
def test_bad_import_line_is_rejected_and_stores_nothing(client, db, world, bad):
    before = _rows(db)
    resp = client.post("/api/v1/prompts/import", headers=world.admin,
                       files={"file": ("p.jsonl", bad + "\n")})
    assert resp.status_code == 200 and resp.json()["rejected"] == 1, resp.text
    candidates = json.dumps({"prompt": "Hello", "candidates": [{"text": "x"}]})
    for line in (bad, candidates.replace('"x"', _escaped(NUL)),
                 json.dumps({"prompt_id": BIG, "candidates": [{"text": "x"}]})):
        resp = client.post("/api/v1/candidates/import", headers=world.admin,
                           files={"file": ("c.jsonl", line + "\n")})
        assert resp.status_code == 200 and resp.json()["rejected"] == 1, (line[:80], resp.text)
    db.expire_all()
    assert _rows(db) == before


def test_422_names_each_field_in_words(client, world):
    resp = client.post("/api/v1/exports", headers=world.admin, json={
        "kind": "rankings", "filters": {"labeler_ids": [1, "x"], "min_agreement": 2}})
    assert resp.status_code == 422
    body = resp.json()
    assert {e["field"] for e in body["errors"]} == {"filters.labeler_ids.1",
                                                     "filters.min_agreement"}
    assert "Labeler ids (item 2) should be a valid integer" in body["detail"]
    assert "Min agreement should be less than or equal to 1" in body["detail"]


def test_page_error_is_a_page_not_json(client, world):
    resp = client.get(f"/label/a/{BIG}", headers=world.labeler)
    assert resp.status_code == 422 and resp.headers["content-type"].startswith("text/html")
    assert "Assignment id should be less than or equal to" in resp.text
