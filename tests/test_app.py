"""Process-level behaviour of the application object."""

import gc

from fastapi.testclient import TestClient

import app.main


def test_server_start_freezes_startup_objects_out_of_the_cycle_collector(engine, monkeypatch):
    settings = app.main.get_settings().model_copy(update={"env": "development"})
    monkeypatch.setattr(app.main, "get_settings", lambda: settings)
    gc.unfreeze()
    try:
        with TestClient(app.main.create_app()):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_test_runs_do_not_freeze(engine):
    gc.unfreeze()
    with TestClient(app.main.create_app()):
        assert gc.get_freeze_count() == 0


def test_unknown_page_keeps_the_navigation_and_favicon_is_served(app, committed_db):
    from fastapi.testclient import TestClient

    from tests.factories import login, make_user

    # Committed, and a client on the real database: a page no route matched finds its user
    # outside any request session.
    user = make_user(committed_db, "researcher")
    committed_db.commit()
    client = TestClient(app)
    login(client, user)
    resp = client.get("/no/such/page")
    assert resp.status_code == 404
    assert "Page not found" in resp.text and "/no/such/page" in resp.text
    assert 'href="/tasks"' in resp.text and 'href="/agreement"' in resp.text  # the navigation
    assert 'rel="icon" href="/static/favicon.svg"' in resp.text
    client.cookies.clear()
    anonymous = client.get("/no/such/page")
    assert anonymous.status_code == 404 and 'href="/login?next=/no/such/page"' in anonymous.text
    icon = client.get("/favicon.ico", follow_redirects=True)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
    client.close()
