"""Fixtures of the loop's tests: a tiny base model where the jobs look for it, and a client
whose requests commit for real (workers must see what the API wrote)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import get_settings

TINY_FLAGS = ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--n-positions", "256",
              "--pretrain-steps", "20", "--pretrain-batch", "8", "--pretrain-len", "48"]


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    """The tiny base model, built once where registry.base_model_path() expects it."""
    from training.__main__ import main as training_main

    path = (get_settings().models_dir / "base-tiny").resolve()
    if not (path / "config.json").exists():
        assert training_main(["--threads", "1", "tiny", "--out", str(path), *TINY_FLAGS]) == 0
    return path


@pytest.fixture
def live_client(app, committed_db) -> Iterator:  # type: ignore[no-untyped-def]
    """An HTTP client on the app with real, committed request sessions."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


@pytest.fixture
def staff_token(committed_db) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Bearer headers of a researcher."""
    from app.auth import service as auth
    from app.auth.models import Role
    from tests.factories import make_user

    user = make_user(committed_db, Role.researcher)
    _, token = auth.create_token(db=committed_db, user=user, name="researcher")
    committed_db.commit()
    return {"Authorization": f"Bearer {token}"}
