"""Where the server and its published spec used to disagree: a 405's Allow header, a
public route's answer to bad credentials, and a number sent as a date."""

import pytest

from app.auth import service as auth
from tests.factories import make_user


@pytest.mark.parametrize("method, path, allow", [
    ("PUT", "/login", "GET, POST"),  # two routes, one path
    ("DELETE", "/api/v1/rounds", "GET, POST"),
    ("DELETE", "/api/v1/models/rollback", "POST"),  # not also /api/v1/models/{model_id}'s GET
    ("PATCH", "/api/v1/jobs/1", "GET"),
])
def test_a_405_names_every_method_of_the_path(client, method, path, allow):
    resp = client.request(method, path)
    assert resp.status_code == 405 and resp.headers["Allow"] == allow


@pytest.mark.parametrize("path", ["/tasks/create", "/jobs/rounds", "/models/rollback",
                                  "/api/v1/models/rollback"])
def test_a_get_of_a_post_only_path_is_405_not_its_id_neighbour(client, db, path):
    # GET /tasks/create was routed to GET /tasks/{task_id}, to answer 422 ("create" is no
    # id) or 403, where the spec says the path has no GET: those ids are integers now.
    _, token = auth.create_token(db=db, user=make_user(db, "admin"))
    resp = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"


def test_a_public_route_answers_a_caller_with_bad_credentials_as_anyone(client):
    for header in ("Bearer expired-or-wrong", "Basic abc"):
        resp = client.get("/healthz", headers={"Authorization": header})
        assert resp.status_code in (200, 503) and "ok" in resp.json()
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.parametrize("value", ["-3.3e-68", "1700000000", "0"])
def test_a_number_is_not_a_date(client, db, value):
    _, token = auth.create_token(db=db, user=make_user(db, "researcher"))
    resp = client.get(f"/api/v1/agreement/summary?until={value}",
                      headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 422 and "not a number" in resp.json()["detail"]
