"""A database outage: 503 with Retry-After while PostgreSQL is away, and no failed request
from pooled connections the server closed once it is back.

The app's database is reached through a TCP proxy the test cuts and restores; the shared
PostgreSQL server is never restarted.
"""

import psycopg
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

import app.db
from app.auth import service
from app.auth.deps import PUBLIC, allow
from app.auth.models import Role
from app.db import DbSession, database_unavailable
from tests.factories import login, make_user
from tests.tcp_proxy import TcpProxy


@pytest.mark.parametrize(("error", "outage"), [
    (psycopg.OperationalError("connection failed: Connection refused"), True),
    (psycopg.errors.AdminShutdown("terminating connection"), True),
    (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
    (psycopg.errors.TooManyConnections("too many clients"), True),
    (psycopg.errors.QueryCanceled("statement timeout"), False),
    (psycopg.errors.UniqueViolation("duplicate key"), False),
    (psycopg.errors.SyntaxError("syntax error"), False),
])
def test_outage_errors_are_told_from_faults_of_the_statement(error, outage):
    wrapped = DBAPIError.instance("SELECT 1", {}, error, psycopg.Error)
    assert database_unavailable(wrapped) is outage


@pytest.fixture
def proxy(engine, monkeypatch):  # type: ignore[no-untyped-def]
    """A proxy to the test database; the app's requests use it from here on."""
    url = engine.url
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = app.db.make_engine(
        make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    factory = sessionmaker(bind=proxied, expire_on_commit=False)
    monkeypatch.setattr(app.db, "_session_factory", lambda: factory)
    proxy.engine = proxied  # type: ignore[attr-defined]
    yield proxy
    proxy.close()
    proxied.dispose()


@pytest.fixture
def users(committed_db):  # type: ignore[no-untyped-def]
    labeler = make_user(committed_db, Role.labeler)
    _, token = service.create_token(db=committed_db, user=labeler)
    committed_db.commit()
    return labeler, {"Authorization": f"Bearer {token}"}


def _fill_pool(proxy: TcpProxy, n: int) -> None:
    """Leave n idle connections in the app's pool, as a server under load has."""
    conns = [proxy.engine.connect() for _ in range(n)]  # type: ignore[attr-defined]
    for conn in conns:
        conn.exec_driver_sql("SELECT 1")
    for conn in conns:
        conn.close()


@pytest.mark.postgres_only
def test_pooled_connections_closed_by_a_restart_fail_no_request(app, proxy, users):
    labeler, bearer = users
    with TestClient(app, raise_server_exceptions=False) as client:
        login(client, labeler)
        _fill_pool(proxy, 6)
        proxy.cut()  # the server restarted: every pooled connection is dead
        codes = [client.get("/api/v1/me", headers=bearer).status_code for _ in range(4)]
        codes += [client.get("/api/v1/me").status_code for _ in range(4)]
        codes += [client.get("/account").status_code for _ in range(4)]
    assert codes == [200] * 12


@pytest.mark.postgres_only
def test_database_down_answers_503_with_retry_after_then_recovers(app, proxy, users):
    labeler, bearer = users
    with TestClient(app, raise_server_exceptions=False) as client:
        login(client, labeler)
        _fill_pool(proxy, 3)
        proxy.down()
        api = client.get("/api/v1/me", headers=bearer)
        assert api.status_code == 503
        assert int(api.headers["Retry-After"]) > 0
        assert "unavailable" in api.json()["detail"]
        page = client.get("/account", follow_redirects=False)
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert int(page.headers["Retry-After"]) > 0 and "Back in a moment" in page.text
        proxy.up()
        assert client.get("/api/v1/me", headers=bearer).status_code == 200
        assert client.get("/account").status_code == 200  # the session survived the outage


@pytest.mark.postgres_only
def test_connection_lost_before_the_commit_answers_503(app, proxy, users):
    """The request's transaction is committed after the route returns; losing the
    connection there is an outage too, not a 500."""

    @app.post("/api/v1/test-outage-commit", dependencies=[Depends(allow(PUBLIC))])
    def _write_then_lose_the_server(db: DbSession) -> dict[str, bool]:
        db.execute(text("SELECT 1"))
        proxy.cut()
        return {"ok": True}

    _, bearer = users
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.post("/api/v1/test-outage-commit", headers=bearer)
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        assert client.get("/api/v1/me", headers=bearer).status_code == 200
