"""Every route × every role (and anonymous) gets the answer its declared roles give.

A route added without `allow(...)` fails test_every_route_declares_roles; a route whose
declaration is not enforced fails the matrix.
"""

import re

import pytest
from fastapi.routing import APIRoute

from app.auth.deps import PUBLIC, Allow
from app.auth.models import Role
from app.main import api_routes, create_app
from tests.factories import csrf_from, login, make_user

ROLES = [r.value for r in Role]


def _allows(route: APIRoute) -> list[Allow]:
    found: list[Allow] = []

    def walk(dep) -> None:  # type: ignore[no-untyped-def]
        if isinstance(dep.call, Allow):
            found.append(dep.call)
        for sub in dep.dependencies:
            walk(sub)

    walk(route.dependant)
    return found


def _routes() -> list[APIRoute]:
    return api_routes(create_app(check_migrations=False))


def test_every_route_declares_roles():
    undeclared = [f"{sorted(r.methods)} {r.path}" for r in _routes() if not _allows(r)]
    assert undeclared == [], f"routes without allow(...): {undeclared}"
    ambiguous = [r.path for r in _routes() if len({a for a in _allows(r)}) > 1]
    assert ambiguous == [], f"routes with several role declarations: {ambiguous}"


def _cases() -> list[tuple[str, str, frozenset[str]]]:
    cases = []
    for route in _routes():
        roles = _allows(route)[0].roles
        for method in sorted(route.methods - {"HEAD"}):
            cases.append((method, route.path, roles))
    return cases


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "999999", path)


@pytest.fixture
def sessions(app, client, db):  # type: ignore[no-untyped-def]
    """Cookies and CSRF token of one logged-in session per role."""
    out = {}
    for role in ROLES:
        client.cookies.clear()
        csrf = login(client, make_user(db, role))
        out[role] = (dict(client.cookies), csrf)
    client.cookies.clear()
    # Anonymous visitors get a session (and CSRF token) from the login page.
    out[None] = (dict(client.get("/login").cookies), csrf_from(client.get("/login").text))
    client.cookies.clear()
    return out


@pytest.mark.parametrize(("method", "path", "roles"), _cases(),
                         ids=[f"{m} {p}" for m, p, _ in _cases()])
def test_route_answers_each_role_as_declared(app, client, sessions, method, path, roles):
    url = _url(path)
    api = path.startswith("/api/") or path == "/healthz"
    for who in [None, *ROLES]:
        cookies, csrf = sessions[who]
        client.cookies.clear()
        client.cookies.update(cookies)
        resp = client.request(method, url, headers={"X-CSRF-Token": csrf},
                              follow_redirects=False)
        label = f"{method} {path} as {who or 'anonymous'}"
        if PUBLIC in roles or (who and who in roles):
            # Allowed: any answer but a refusal or a server error (an unknown id, an empty
            # body: 404, 422, 204 ...).
            assert resp.status_code not in (401, 403), f"{label}: refused ({resp.status_code})"
            assert resp.status_code < 500, f"{label}: server error ({resp.status_code})"
        elif who is None:
            if api:
                assert resp.status_code == 401, label
            else:
                assert resp.status_code == 303 and "/login" in resp.headers["location"], label
        else:
            assert resp.status_code == 403, f"{label}: got {resp.status_code}"
