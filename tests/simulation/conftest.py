"""The live uvicorn server of the browser tests, for the pool's tests."""

from tests.e2e.conftest import live_server  # noqa: F401 - a fixture
