"""Login, logout, throttling, CSRF and bearer tokens through the HTTP app."""

from sqlalchemy import func, select

from app.auth.models import ApiToken, Role, User
from tests.factories import PASSWORD, csrf_from, login, make_user


def test_login_with_right_password_starts_session(client, db):
    user = make_user(db, Role.researcher)
    login(client, user)
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json() == {"id": user.id, "email": user.email, "name": "", "role": "researcher",
                         "held_out": False}


def test_login_with_wrong_password_shows_error_and_no_session(client, db):
    user = make_user(db)
    token = csrf_from(client.get("/login").text)
    resp = client.post("/login", data={"email": user.email, "password": "wrong password!",
                                       "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 401
    assert "Wrong email or password" in resp.text
    assert client.get("/api/v1/me").status_code == 401


def test_login_of_unknown_or_inactive_user_fails(client, db):
    user = make_user(db)
    user.active = False
    db.flush()
    token = csrf_from(client.get("/login").text)
    for email in (user.email, "nobody@example.com"):
        resp = client.post("/login", data={"email": email, "password": PASSWORD,
                                           "csrf_token": token})
        assert resp.status_code == 401


def test_logout_ends_session(client, db):
    token = login(client, make_user(db))
    resp = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_login_throttled_after_repeated_failures(client, db):
    user = make_user(db)
    token = csrf_from(client.get("/login").text)
    for _ in range(5):
        resp = client.post("/login", data={"email": user.email, "password": "nope-nope-1",
                                           "csrf_token": token})
        assert resp.status_code == 401
    # Even the right password is refused while throttled, with a wait time.
    resp = client.post("/login", data={"email": user.email, "password": PASSWORD,
                                       "csrf_token": token})
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert "Try again in" in resp.text
    assert client.get("/api/v1/me").status_code == 401


def test_form_post_without_csrf_is_refused_and_changes_nothing(client, db):
    admin = make_user(db, Role.admin)
    login(client, admin)
    before = db.scalar(select(func.count()).select_from(User))
    resp = client.post("/admin/users", data={"email": "new@example.com", "password": PASSWORD,
                                             "role": "labeler"})
    assert resp.status_code == 403
    resp = client.post("/admin/users", data={"email": "new@example.com", "password": PASSWORD,
                                             "role": "labeler", "csrf_token": "forged"})
    assert resp.status_code == 403
    assert db.scalar(select(func.count()).select_from(User)) == before


def test_login_form_without_csrf_is_refused(client, db):
    user = make_user(db)
    resp = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 403
    assert client.get("/api/v1/me").status_code == 401


def test_admin_creates_user_with_csrf(client, db):
    token = login(client, make_user(db, Role.admin))
    resp = client.post("/admin/users", data={"email": "New@Example.com", "password": PASSWORD,
                                             "role": "labeler", "held_out": "true",
                                             "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303
    created = db.scalar(select(User).where(User.email == "new@example.com"))
    assert created is not None and created.held_out and created.role == Role.labeler


def test_password_reset_ends_existing_sessions(client, db):
    labeler = make_user(db)
    login(client, labeler)
    from app.auth import service

    service.set_password(db=db, user=labeler, password="another password")
    assert client.get("/api/v1/me").status_code == 401


def test_session_cookie_is_httponly_and_lax(client, db):
    cookie = client.get("/login").headers.get("set-cookie", "")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()


def test_bearer_token_works_then_refused_after_revocation(client, db):
    user = make_user(db, Role.labeler)
    csrf = login(client, user)
    created = client.post("/api/v1/tokens", json={"name": "script"},
                          headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201
    clear = created.json()["token"]
    # Never stored in clear.
    stored = db.scalars(select(ApiToken.token_hash)).all()
    assert clear not in stored and all(clear not in h for h in stored)
    client.cookies.clear()
    auth = {"Authorization": f"Bearer {clear}"}
    assert client.get("/api/v1/me", headers=auth).json()["email"] == user.email
    # Bearer requests need no CSRF token (no cookie is involved).
    revoke = client.delete(f"/api/v1/tokens/{created.json()['id']}", headers=auth)
    assert revoke.status_code == 200 and revoke.json()["revoked_at"]
    assert client.get("/api/v1/me", headers=auth).status_code == 401


def test_bad_bearer_token_is_401_not_a_fallback_to_cookie(client, db):
    login(client, make_user(db))
    resp = client.get("/api/v1/me", headers={"Authorization": "Bearer rlhf_nonsense"})
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_cookie_api_post_without_csrf_header_is_refused(client, db):
    login(client, make_user(db))
    assert client.post("/api/v1/tokens", json={"name": "x"}).status_code == 403


def test_labeler_cannot_list_users_or_open_admin_page(client, db):
    login(client, make_user(db, Role.labeler))
    assert client.get("/api/v1/users").status_code == 403
    assert client.get("/admin/users").status_code == 403


def test_healthz_reports_database_and_broker(client):
    body = client.get("/healthz").json()
    assert body["database"]["ok"] is True and body["database"]["migrated"] is True
    assert "broker" in body


def test_error_page_after_rollback_renders_for_logged_in_user(app, committed_db):
    """A route error rolls the request transaction back; the error page still knows the user."""
    from fastapi.testclient import TestClient

    admin = make_user(committed_db, Role.admin)
    committed_db.commit()
    with TestClient(app) as real:  # no session override: the production transaction path
        csrf = login(real, admin)
        resp = real.post("/admin/users/999999", data={"csrf_token": csrf, "active": "false"})
    assert resp.status_code == 404
    assert admin.email in resp.text and "No user 999999" in resp.text


def test_users_page_buttons_say_what_a_click_does(client, db):
    login(client, make_user(db, Role.admin))
    make_user(db, email="judge@example.com", held_out=True)
    make_user(db, email="plain@example.com")
    page = client.get("/admin/users").text
    assert "unset" not in page and "No — set" not in page
    row = page[page.index("judge@example.com"):page.index("</tr>", page.index("judge@example.com"))]
    assert "Move to training labelers</button>" in row and 'value="false"' in row
    row = page[page.index("plain@example.com"):page.index("</tr>", page.index("plain@example.com"))]
    assert "Make held-out</button>" in row and "Deactivate</button>" in row
