"""Server-side sessions: a cookie stops working once its session ends, whoever ends it."""

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.auth import service
from app.auth.models import ApiToken, Role, UserSession
from app.db import utcnow
from tests.factories import PASSWORD, login, make_user


def _replay(client, cookies: dict[str, str]) -> tuple[int, int, str]:  # type: ignore[no-untyped-def]
    """The API's and the account page's answers to a request carrying these cookies."""
    client.cookies.clear()
    client.cookies.update(cookies)
    api = client.get("/api/v1/me").status_code
    page = client.get("/account", follow_redirects=False)
    return api, page.status_code, page.headers.get("location", "")


def test_replayed_cookie_after_logout_is_refused(client, db):
    csrf = login(client, make_user(db))
    copied = dict(client.cookies)
    assert client.get("/api/v1/me").status_code == 200
    resp = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert resp.status_code == 303
    api, page, location = _replay(client, copied)
    assert api == 401
    assert page == 303 and location.startswith("/login")


def test_cookie_holds_no_user_id_and_the_database_no_secret(client, db):
    user = make_user(db)
    login(client, user)
    stored = db.scalars(select(UserSession.token_hash).where(UserSession.user_id == user.id))
    hashes = list(stored)
    assert len(hashes) == 1
    cookie = client.cookies["rlhf_session"]
    assert all(h not in cookie for h in hashes)


def test_log_out_everywhere_ends_the_other_browsers_sessions(app, client, db):
    user = make_user(db)
    login(client, user)
    elsewhere = dict(client.cookies)
    client.cookies.clear()
    with TestClient(app) as second:
        csrf = login(second, user)
        assert "Logged in on 2 browsers" in second.get("/account").text
        resp = second.post("/account/logout-everywhere", data={"csrf_token": csrf},
                           follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == "/login"
        assert second.get("/api/v1/me").status_code == 401
    assert _replay(client, elsewhere)[0] == 401
    assert db.scalars(select(UserSession).where(UserSession.user_id == user.id)).all() == []


def test_api_log_out_everywhere_with_a_token_keeps_the_token(client, db):
    user = make_user(db)
    login(client, user)
    cookies = dict(client.cookies)
    _, token = service.create_token(db=db, user=user)
    client.cookies.clear()
    auth = {"Authorization": f"Bearer {token}"}
    resp = client.delete("/api/v1/sessions", headers=auth)
    assert resp.status_code == 200 and resp.json() == {"ended": 1}
    assert client.get("/api/v1/me", headers=auth).status_code == 200
    assert _replay(client, cookies)[0] == 401


def test_deactivation_ends_sessions_for_good(client, db):
    """Reactivating the user does not bring the old cookie back to life."""
    admin, labeler = make_user(db, Role.admin), make_user(db)
    login(client, labeler)
    labeler_cookies = dict(client.cookies)
    client.cookies.clear()
    csrf = login(client, admin)
    for active in (False, True):
        resp = client.patch(f"/api/v1/users/{labeler.id}", json={"active": active},
                            headers={"X-CSRF-Token": csrf})
        assert resp.status_code == 200
    assert _replay(client, labeler_cookies)[0] == 401


def test_password_reset_ends_sessions_and_revokes_tokens_by_default(client, db):
    user = make_user(db)
    login(client, user)
    cookies = dict(client.cookies)
    _, token = service.create_token(db=db, user=user)
    service.set_password(db=db, user=user, password="a new password")
    assert _replay(client, cookies)[0] == 401
    client.cookies.clear()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code \
        == 401
    assert db.scalar(select(ApiToken.revoked_at).where(ApiToken.user_id == user.id)) is not None


def test_password_reset_may_keep_tokens(client, db):
    admin, user = make_user(db, Role.admin), make_user(db)
    _, admin_token = service.create_token(db=db, user=admin)
    _, token = service.create_token(db=db, user=user)
    resp = client.patch(f"/api/v1/users/{user.id}",
                        json={"password": "a new password", "keep_tokens": True},
                        headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status_code == 200
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code \
        == 200
    resp = client.patch(f"/api/v1/users/{user.id}", json={"password": "another new one"},
                        headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status_code == 200
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code \
        == 401


def test_expired_session_is_refused(client, db):
    user = make_user(db)
    login(client, user)
    db.execute(update(UserSession).where(UserSession.user_id == user.id)
               .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/v1/me").status_code == 401


def test_login_again_ends_the_browsers_previous_session(client, db):
    user = make_user(db)
    login(client, user)
    before = dict(client.cookies)
    login(client, user, PASSWORD)
    assert len(db.scalars(select(UserSession).where(UserSession.user_id == user.id)).all()) == 1
    assert _replay(client, before)[0] == 401


def test_cli_password_reset_revokes_tokens_unless_kept(committed_db):
    from typer.testing import CliRunner

    from app.cli import root

    user = make_user(committed_db)
    _, token = service.create_token(db=committed_db, user=user)
    committed_db.commit()
    args = ["users", "set-password", "--email", user.email, "--password", "new password 1"]
    out = CliRunner().invoke(root, [*args, "--keep-tokens"])
    assert out.exit_code == 0 and "API tokens kept" in out.output
    assert service.user_for_token(db=committed_db, token=token) is not None
    committed_db.commit()  # the lookup noted the token's use: release that row
    out = CliRunner().invoke(root, args)
    assert out.exit_code == 0 and "API tokens revoked" in out.output
    committed_db.expire_all()
    assert service.user_for_token(db=committed_db, token=token) is None
