"""Each test starts with an empty report cache: rolled-back data can repeat a fingerprint."""

import pytest

from app.agreement import service


@pytest.fixture(autouse=True)
def _fresh_agreement_cache():  # type: ignore[no-untyped-def]
    service.clear_cache()
    yield
    service.clear_cache()
