"""A Celery task runs in a real worker process, through Redis and through the embedded transport."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings
from app.worker import make_celery

REDIS_URL = os.environ.get("RLHF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "app.worker", "worker", "--pool", "solo",
         "-Q", "default", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _round_trip(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    celery = make_celery(settings)
    worker = _start_worker(env)
    try:
        result = celery.send_task("worker.ping", args=["hello"]).get(timeout=90)
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=30)
    assert result["value"] == "hello", out
    return result


@pytest.mark.slow
def test_task_runs_in_worker_process_through_redis(tmp_path: Path):
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {"RLHF_REDIS_URL": REDIS_URL, "RLHF_DATA_DIR": str(tmp_path)}
    result = _round_trip(Settings(redis_url=REDIS_URL, data_dir=tmp_path), env)
    assert int(result["pid"]) != os.getpid()


@pytest.mark.slow
def test_task_runs_in_worker_process_through_embedded_transport(tmp_path: Path):
    env = {"RLHF_REDIS_URL": "", "RLHF_DATA_DIR": str(tmp_path)}
    settings = Settings(redis_url="", data_dir=tmp_path)
    result = _round_trip(settings, env)
    assert int(result["pid"]) != os.getpid()
    # The message really went through the folder transport, not Redis.
    assert (tmp_path / "celery-broker" / "in").is_dir()
    assert any((tmp_path / "celery-results").iterdir())


@pytest.mark.parametrize("redis_url", ["", REDIS_URL], ids=["embedded", "redis"])
def test_healthz_broker_status_follows_configuration(redis_url, tmp_path, monkeypatch):
    from app import health

    settings = Settings(redis_url=redis_url, data_dir=tmp_path)
    make_celery(settings)  # creates the embedded folders
    monkeypatch.setattr(health, "get_settings", lambda: settings)
    report = health._broker()
    assert report["ok"] is True
    assert report["kind"] == ("redis" if redis_url else "embedded")
    monkeypatch.setattr(health, "get_settings",
                        lambda: Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path))
    assert health._broker()["ok"] is False
