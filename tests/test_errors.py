"""One error model: a DomainError is answered once, as ErrorBody for the API and as a page
(the form's own page, filled in, where the route asks for it) for the browser."""

import pytest
from fastapi import APIRouter, Form
from fastapi.responses import Response
from sqlalchemy import func, select

from app.auth.deps import AnyUser
from app.auth.models import Role, User
from app.errors import DomainError, redisplays
from app.prompts.models import UseCase
from app.templating import render
from tests.factories import login, make_user


class GizmoError(DomainError):
    """What a new domain writes to adopt the model."""

    status = 409


def _gizmo_page(request, form, message):  # type: ignore[no-untyped-def]
    return render(request, "error.html", title="Gizmos", detail=f"{message} [{form['name']}]")


@pytest.fixture
def gizmo_app(app):  # type: ignore[no-untyped-def]
    router = APIRouter()

    @router.post("/api/v1/gizmos")
    def make_gizmo(_: AnyUser) -> None:
        raise GizmoError("A gizmo is already being made: wait for it to finish.")

    @router.post("/gizmos")
    @redisplays(_gizmo_page)
    def make_gizmo_form(_: AnyUser, name: str = Form()) -> Response:
        raise GizmoError("No gizmo 7.", status=404)

    app.include_router(router)
    return app


def test_domain_error_is_one_json_body_and_a_page(gizmo_app, client, db):
    csrf = login(client, make_user(db))
    api = client.post("/api/v1/gizmos", headers={"X-CSRF-Token": csrf})
    assert api.status_code == 409
    assert api.json() == {"detail": "A gizmo is already being made: wait for it to finish.",
                          "errors": []}
    page = client.post("/gizmos", data={"name": "sprocket", "csrf_token": csrf})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "No gizmo 7. [sprocket]" in page.text


def test_not_authenticated_is_401_for_the_api_and_a_login_redirect_for_pages(client):
    api = client.get("/api/v1/me")
    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
    assert api.json()["detail"].startswith("Not authenticated")
    page = client.get("/exports", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/exports"


def test_invalid_form_field_is_a_page_with_a_sentence(client, db):
    csrf = login(client, make_user(db, Role.admin))
    resp = client.post("/tasks/demonstrate", data={"overlap": "999", "csrf_token": csrf})
    assert resp.status_code == 422 and resp.headers["content-type"].startswith("text/html")
    assert "Overlap should be less than or equal to 50." in resp.text
    # The tasks page again: the form that was sent keeps its values, the other its defaults.
    assert 'name="overlap" min="1" max="50" value="999"' in resp.text
    assert 'name="count" min="1" max="10000" value="10"' in resp.text


def test_invalid_login_is_the_login_form_again(client):
    page = client.get("/login")
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    resp = client.post("/login", data={"email": "ada@example.com", "password": "x" * 300,
                                       "csrf_token": csrf})
    assert resp.status_code == 422
    assert "Password should have at most 200 characters." in resp.text
    assert 'value="ada@example.com"' in resp.text and "x" * 300 not in resp.text


def _use_cases(db) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(select(func.count()).select_from(UseCase))


def test_refused_form_comes_back_filled_in(client, db):
    csrf = login(client, make_user(db, Role.admin))
    created = client.post("/admin/use-cases", data={"name": "Brainstorming",
                                                    "csrf_token": csrf}, follow_redirects=False)
    assert created.status_code == 303 and _use_cases(db) == 1
    again = client.post("/admin/use-cases", data={
        "name": "Brainstorming", "description": "Ideas <b>please</b>", "csrf_token": csrf})
    assert again.status_code == 409
    assert "There is already a use case named &#39;Brainstorming&#39;." in again.text
    assert "Ideas &lt;b&gt;please&lt;/b&gt;</textarea>" in again.text  # kept, escaped
    assert _use_cases(db) == 1


def test_refused_user_form_keeps_the_fields_but_never_the_password(client, db):
    admin = make_user(db, Role.admin)
    csrf = login(client, admin)
    users = db.scalar(select(func.count()).select_from(User))
    resp = client.post("/admin/users", data={
        "email": admin.email, "name": "Ada", "password": "a-secret-password",
        "role": "researcher", "csrf_token": csrf})
    assert resp.status_code == 409 and "already exists" in resp.text
    assert f'value="{admin.email}"' in resp.text and 'value="Ada"' in resp.text
    assert '<option value="researcher" selected>' in resp.text
    assert "a-secret-password" not in resp.text
    assert db.scalar(select(func.count()).select_from(User)) == users


def test_forbidden_form_post_never_shows_the_page(client, db):
    csrf = login(client, make_user(db, Role.labeler))
    resp = client.post("/exports", data={"kind": "sft", "csrf_token": csrf})
    assert resp.status_code == 403 and "Dataset exports" not in resp.text


def test_refused_form_stores_nothing(client, db):
    """A refusal rolls the request back: nothing of the form's work is stored."""
    csrf = login(client, make_user(db, Role.admin))
    resp = client.post("/admin/use-cases", data={"name": "  ", "csrf_token": csrf})
    assert resp.status_code == 400 and "A use case needs a name." in resp.text
    assert _use_cases(db) == 0


def test_a_field_named_by_a_unicode_digit_is_a_sentence_not_a_500(client, db):
    """A round's config is a client's dict: a key such as '³' (a digit to str.isdigit, not
    to int) named in a validation error once made the sentence builder raise."""
    from app.auth import service as auth

    token = auth.create_token(db=db, user=make_user(db, Role.researcher))[1]
    resp = client.post("/api/v1/rounds", json={"config": {"³": {"2": "a\x00b"}}},
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 422, resp.text
    assert "³" in resp.json()["errors"][0]["field"]
