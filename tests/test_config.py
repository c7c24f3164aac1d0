"""Settings: every path follows RLHF_DATA_DIR, so two deployments on one machine stay apart."""

from itertools import product
from pathlib import Path

import pytest

from app.config import Settings

# Set by tests/conftest.py for the test process; here the defaults are under test.
PATH_VARIABLES = ("RLHF_MODELS_DIR", "RLHF_EXPORTS_DIR", "RLHF_DATABASE_URL", "RLHF_REDIS_URL")


def _paths(settings: Settings) -> list[Path]:
    """Every file or folder these settings write to."""
    out = [value.resolve() for name in type(settings).model_fields
           if isinstance(value := getattr(settings, name), Path)]
    out.append(settings.broker_folder)
    for url in (settings.effective_database_url, settings.result_backend):
        for scheme in ("sqlite:///", "file://"):
            if url.startswith(scheme):
                out.append(Path(url.removeprefix(scheme)).resolve())
    return out


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


@pytest.fixture
def defaults(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """Only RLHF_DATA_DIR set, from a neutral working directory."""
    for name in PATH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_two_data_dirs_share_no_path(defaults, monkeypatch, tmp_path):
    settings = []
    for name in ("one", "two"):
        monkeypatch.setenv("RLHF_DATA_DIR", str(tmp_path / name))
        settings.append(Settings())
    one, two = (_paths(s) for s in settings)
    assert len(one) >= 6  # data, models, exports, broker, database, results
    shared = [(a, b) for a, b in product(one, two) if _overlap(a, b)]
    assert shared == []
    assert settings[0].models_dir.resolve() == (tmp_path / "one" / "models")
    assert settings[1].exports_dir.resolve() == (tmp_path / "two" / "exports")


def test_models_and_exports_dirs_set_on_their_own_win(defaults, monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RLHF_MODELS_DIR", str(tmp_path / "big-disk" / "models"))
    settings = Settings()
    assert settings.models_dir == tmp_path / "big-disk" / "models"
    assert settings.exports_dir == tmp_path / "data" / "exports"
