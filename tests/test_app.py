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
