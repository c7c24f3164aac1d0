"""Helpers shared by the export tests."""

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from app.auth.models import Role
from app.exports import service
from app.exports.schemas import ExportCreate
from tests.factories import make_user


def read_data(snapshot: Any) -> list[dict[str, Any]]:
    """The rows of a finished snapshot's data file."""
    path = Path(snapshot.path) / snapshot.manifest["files"][0]["name"]
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def export(db):  # type: ignore[no-untyped-def]
    """export(kind, fmt="jsonl", chat=False, **filters) -> (snapshot, rows)."""
    admin = make_user(db, Role.admin)

    def run(kind: str, fmt: str = "jsonl", chat: bool = False, **filters: Any):  # type: ignore[no-untyped-def]
        request = ExportCreate(kind=kind, format=fmt, chat=chat, filters=filters)
        snapshot = service.create_snapshot(db=db, user=admin, request=request)
        service.build(db=db, snapshot=snapshot)
        assert snapshot.state == "done"
        return snapshot, read_data(snapshot)

    return run
