"""Where the server and its published spec used to disagree: a 405's Allow header, a
public route's answer to bad credentials, a number sent as a date, the years, text and
emails the server takes, a taken email, a form field sent as null, an upload's body."""

import re

import jsonschema_rs
import pytest
from pydantic import TypeAdapter, ValidationError

from app.auth import service as auth
from app.fields import STORABLE_JSON, Day, Email, JsonValue, Moment, Name, Text
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


@pytest.mark.parametrize("kind, value, taken", [
    (Moment, "1969-12-31T23:59:59Z", False), (Moment, "1970-01-01T00:00:00+05:00", True),
    (Moment, "2099-12-31T23:59:59-05:00", True), (Moment, "2100-01-01T00:00:00Z", False),
    (Day, "0109-11-02", False), (Day, "2024-02-29", True), (Day, "9999-01-01", False),
    (Text, "a\x00b", False), (Text, "any text, é 🙂", True),
    (Email, "name@example.org", True), (Email, "app", False), (Email, "a\x00@b", False),
    (Name, "Brainstorming", True), (Name, " \u2003 ", False), (Name, "\x1c", False),
])
def test_the_spec_states_what_the_server_takes(kind, value, taken):
    """A value matches the pattern the spec publishes exactly when the validator takes it."""
    adapter = TypeAdapter(kind)
    pattern = adapter.json_schema()["pattern"]
    try:
        adapter.validate_python(value)
        validated = True
    except ValidationError:
        validated = False
    assert validated is taken and (re.search(pattern, value) is not None) is taken


@pytest.mark.parametrize("value, taken", [
    ({"a": [1, "b", None, {"c": 2.5}]}, True), ({"a": ["x\x00"]}, False),
    ({"a\x00": 1}, False), ([[["deep\x00"]]], False),
])
def test_the_spec_states_what_free_json_the_server_takes(client, value, taken):
    spec = client.get("/openapi.json").json()
    published = jsonschema_rs.validator_for({
        "$ref": f"#/components/schemas/{STORABLE_JSON}", "components": spec["components"]})
    try:
        TypeAdapter(JsonValue).validate_python(value)
        validated = True
    except ValidationError:
        validated = False
    assert validated is taken and published.is_valid(value) is taken


def test_a_taken_email_is_a_conflict(client, db):
    admin = make_user(db, "admin")
    _, token = auth.create_token(db=db, user=admin)
    resp = client.post("/api/v1/users", headers={"Authorization": f"Bearer {token}"},
                       json={"email": admin.email, "password": "long-enough", "role": "labeler"})
    assert resp.status_code == 409 and "already exists" in resp.json()["detail"]
    assert "409" in client.get("/openapi.json").json()["paths"]["/api/v1/users"]["post"][
        "responses"]


def test_the_spec_describes_form_fields_and_uploads_as_sent(client):
    spec = client.get("/openapi.json").json()
    schemas, nullable = spec["components"]["schemas"], []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for kind, body in op.get("requestBody", {}).get("content", {}).items():
                ref = body["schema"].get("$ref", "").rsplit("/", 1)[-1]
                fields = schemas.get(ref, body["schema"]).get("properties", {})
                nullable += [f"{method} {path} {name}" for name, field in fields.items()
                             if kind != "application/json"
                             and {"type": "null"} in field.get("anyOf", [])]
    assert nullable == []  # a form cannot send null: a field is given or left out
    for path in ("/api/v1/prompts/import", "/api/v1/candidates/import", "/prompts/import",
                 "/tasks/import-candidates"):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] and "file" in (
            body["content"]["multipart/form-data"]["schema"]["required"])
