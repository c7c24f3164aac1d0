"""The exports page and API: who may use them, creating, queueing and downloading."""

import hashlib
import json

import pytest
from sqlalchemy import func, select

from app.auth.models import Role
from app.exports import service
from app.exports.models import DatasetSnapshot
from app.exports.schemas import ExportCreate
from tests.factories import login, make_user, ranked_task


def _count(db) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(select(func.count()).select_from(DatasetSnapshot))


@pytest.fixture
def done_snapshot(db):  # type: ignore[no-untyped-def]
    ranked_task(db, 4, [(make_user(db), [[0], [1], [2], [3]])])
    snapshot = service.create_snapshot(db=db, user=None, request=ExportCreate(kind="comparisons"))
    return service.build(db=db, snapshot=snapshot)


def test_labeler_cannot_export_list_or_download(client, db, done_snapshot):
    csrf = login(client, make_user(db, Role.labeler))
    before = _count(db)
    sid = done_snapshot.id
    assert client.get("/exports").status_code == 403
    assert client.post("/exports", data={"kind": "prompts", "csrf_token": csrf}).status_code == 403
    assert client.post("/api/v1/exports", json={"kind": "prompts"},
                       headers={"X-CSRF-Token": csrf}).status_code == 403
    for url in ("/api/v1/exports", f"/api/v1/exports/{sid}", f"/api/v1/exports/{sid}/download",
                f"/api/v1/exports/{sid}/download?file=manifest"):
        assert client.get(url).status_code == 403, url
    assert _count(db) == before


@pytest.mark.parametrize("role", [Role.researcher, Role.admin])
def test_staff_create_small_export_and_download_it(client, db, role):
    ranked_task(db, 5, [(make_user(db), [[0], [1, 2], [3], [4]])])
    csrf = login(client, make_user(db, role))
    resp = client.post("/api/v1/exports", json={"kind": "comparisons", "format": "jsonl"},
                       headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["state"] == "done" and body["rows"] == 9 and body["progress"] == 1.0
    data = client.get(body["download_url"])
    assert data.status_code == 200 and data.headers["content-type"] == "application/x-ndjson"
    assert hashlib.sha256(data.content).hexdigest() == body["sha256"]
    assert len(data.content.splitlines()) == 9
    manifest = client.get(body["manifest_url"]).json()
    assert manifest["files"][0]["sha256"] == body["sha256"] and manifest["kind"] == "comparisons"
    listed = client.get("/api/v1/exports").json()
    assert listed[0]["id"] == body["id"]
    assert client.get(f"/api/v1/exports/{body['id']}").json()["sha256"] == body["sha256"]


@pytest.mark.parametrize("payload", [
    {"kind": "everything"},
    {"kind": "comparisons", "format": "csv"},
    {"kind": "comparisons", "filters": {"split": "nope"}},
    {"kind": "comparisons", "filters": {"colour": "red"}},
    {"kind": "comparisons", "filters": {"since": "2025-02-01", "until": "2025-01-01"}},
    {"kind": "comparisons", "filters": {"min_agreement": 1.5}},
    {"kind": "prompts", "filters": {"labeler_ids": [1]}},
    {"kind": "ratings", "chat": True},
    {"kind": "rankings", "filters": {"labeler_ids": [999999]}},
])
def test_bad_request_is_4xx_and_creates_no_snapshot(client, db, payload):
    csrf = login(client, make_user(db, Role.admin))
    before = _count(db)
    resp = client.post("/api/v1/exports", json=payload, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"]
    assert _count(db) == before


def test_large_export_is_queued_as_a_job(client, db, monkeypatch):
    ranked_task(db, 4, [(make_user(db), [[0], [1], [2], [3]])])
    queued: list[int] = []
    monkeypatch.setattr(service, "INLINE_MAX_SOURCE_ROWS", 0)
    monkeypatch.setattr("app.exports.tasks.enqueue", queued.append)
    csrf = login(client, make_user(db, Role.researcher))
    resp = client.post("/api/v1/exports", json={"kind": "grouped"},
                       headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 202, resp.text
    assert resp.json()["state"] == "pending" and resp.json()["download_url"] is None
    assert queued == [resp.json()["id"]]
    download = client.get(f"/api/v1/exports/{queued[0]}/download")
    assert download.status_code == 409


def test_missing_snapshot_is_404(client, db):
    login(client, make_user(db, Role.admin))
    assert client.get("/api/v1/exports/999999").status_code == 404
    assert client.get("/api/v1/exports/999999/download").status_code == 404


def test_page_form_creates_snapshot_and_lists_it(client, db):
    ranked_task(db, 4, [(make_user(db), [[0], [1], [2], [3]])], split="valid")
    csrf = login(client, make_user(db, Role.admin))
    resp = client.post("/exports", data={"kind": "rankings", "format": "parquet",
                                         "split": "valid", "held_out": "", "csrf_token": csrf},
                       follow_redirects=False)
    assert resp.status_code == 303
    snapshot = db.scalars(select(DatasetSnapshot).order_by(DatasetSnapshot.id.desc())).first()
    assert (snapshot.kind, snapshot.format, snapshot.filters) == (
        "rankings", "parquet", {"split": "valid"})
    assert snapshot.state == "done" and snapshot.rows == 1
    page = client.get("/exports")
    assert page.status_code == 200 and f'data-snapshot-id="{snapshot.id}"' in page.text
    assert f"/api/v1/exports/{snapshot.id}/download" in page.text


def test_page_form_with_bad_filter_shows_error_and_creates_nothing(client, db):
    csrf = login(client, make_user(db, Role.admin))
    before = _count(db)
    resp = client.post("/exports", data={"kind": "prompts", "labeler_ids": "1, 2",
                                         "csrf_token": csrf})
    assert resp.status_code == 422 and "Export not created" in resp.text
    assert "do not apply" in resp.text
    # The page again, with what was typed still in the form.
    assert 'value="1, 2"' in resp.text and '<option value="prompts" selected>' in resp.text
    resp = client.post("/exports", data={"kind": "rankings", "min_agreement": "lots",
                                         "labeler_ids": "3, x", "csrf_token": csrf})
    assert resp.status_code == 422
    # Sentences, not pydantic paths.
    assert "Min agreement should be a valid number" in resp.text
    assert "Labeler ids (item 2) should be a valid integer" in resp.text
    assert "labeler_ids.1" not in resp.text and 'value="lots"' in resp.text
    assert _count(db) == before


def test_form_without_csrf_is_refused(client, db):
    login(client, make_user(db, Role.admin))
    before = _count(db)
    assert client.post("/exports", data={"kind": "prompts"}).status_code == 403
    assert _count(db) == before


def test_manifest_download_is_json_of_the_snapshot(client, db, done_snapshot):
    login(client, make_user(db, Role.researcher))
    resp = client.get(f"/api/v1/exports/{done_snapshot.id}/download?file=manifest")
    assert resp.status_code == 200
    assert json.loads(resp.content)["snapshot_id"] == done_snapshot.id


def test_an_export_that_fails_to_build_now_is_a_500_saying_why(client, db, monkeypatch):
    ranked_task(db, 5, [(make_user(db), [[0], [1, 2], [3], [4]])])
    csrf = login(client, make_user(db, Role.researcher))

    def disk_full(**_):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service, "build", disk_full)
    resp = client.post("/api/v1/exports", json={"kind": "comparisons"},
                       headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 500
    assert "No space left on device" in resp.json()["detail"]
    kept = client.get(f"/api/v1/exports/{resp.json()['snapshot_id']}").json()
    assert kept["state"] == "failed" and "No space left" in kept["error"]
