"""The /healthz report: is the database reachable and migrated, is the broker reachable."""

import os
from typing import Any

from sqlalchemy import text

from app.config import get_settings
from app.db import pending_migrations, read_only_engine


def _database() -> dict[str, Any]:
    engine = read_only_engine()  # never waits behind a writer on SQLite
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        migrated = not pending_migrations(engine)
    except Exception as exc:  # noqa: BLE001 - any failure is a status to report
        return {"ok": False, "dialect": engine.dialect.name, "error": str(exc)[:200]}
    return {"ok": migrated, "dialect": engine.dialect.name, "migrated": migrated}


def _broker() -> dict[str, Any]:
    settings = get_settings()
    if settings.redis_url:
        import redis

        try:
            redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "kind": "redis", "error": str(exc)[:200]}
        return {"ok": True, "kind": "redis"}
    folder = settings.broker_folder / "in"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return {"ok": False, "kind": "embedded", "error": str(exc)[:200]}
    return {"ok": os.access(folder, os.W_OK), "kind": "embedded", "folder": str(folder)}


def check() -> dict[str, Any]:
    """Database and broker status, and whether both are fine."""
    database, broker = _database(), _broker()
    return {"ok": database["ok"] and broker["ok"], "database": database, "broker": broker}
