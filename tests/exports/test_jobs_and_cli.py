"""The Celery job (run directly) and the `rlhf-studio export` command, on committed data."""

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import root
from app.exports import service, tasks
from app.exports.models import DatasetSnapshot
from app.exports.schemas import ExportCreate
from tests.factories import make_user, ranked_task

runner = CliRunner()


def _seed(db) -> None:  # type: ignore[no-untyped-def]
    a = make_user(db)
    ranked_task(db, 4, [(a, [[0], [1], [2], [3]])], split="train")
    ranked_task(db, 9, [(a, [[0, 1], [2], [3], [4], [5], [6], [7], [8]])], split="valid")
    db.commit()


def _pending(db, **request) -> int:  # type: ignore[no-untyped-def]
    snapshot = service.create_snapshot(db=db, user=None, request=ExportCreate(**request))
    db.commit()
    return snapshot.id


def test_build_job_finishes_pending_snapshot_and_is_safe_to_rerun(committed_db, monkeypatch):
    _seed(committed_db)
    sid = _pending(committed_db, kind="comparisons", format="parquet")
    seen: list[float] = []
    real = service.set_progress
    monkeypatch.setattr(tasks, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(service, "set_progress",
                        lambda **kw: (seen.append(kw["progress"]), real(**kw)))
    assert tasks.build_snapshot(sid)["state"] == "done"
    committed_db.expire_all()
    snapshot = committed_db.get(DatasetSnapshot, sid)
    assert (snapshot.state, snapshot.rows, snapshot.progress) == ("done", 6 + 35, 1.0)
    assert seen and seen[-1] == 1.0
    first_path = snapshot.path
    assert tasks.build_snapshot(sid)["state"] == "skipped"  # a redelivered job changes nothing
    committed_db.expire_all()
    assert committed_db.get(DatasetSnapshot, sid).path == first_path


def test_build_job_records_failure_and_leaves_no_files(committed_db, monkeypatch, tmp_path):
    _seed(committed_db)
    sid = _pending(committed_db, kind="grouped")

    def broken(**_):  # type: ignore[no-untyped-def]
        raise RuntimeError("database went away")
        yield  # pragma: no cover

    monkeypatch.setattr("app.exports.sources.batches", broken)
    assert tasks.build_snapshot(sid)["state"] == "failed"
    committed_db.expire_all()
    snapshot = committed_db.get(DatasetSnapshot, sid)
    assert snapshot.state == "failed" and "database went away" in snapshot.error
    assert snapshot.path is None


def test_cli_export_writes_snapshot_with_manifest(committed_db, tmp_path):
    _seed(committed_db)
    out = tmp_path / "cmp"
    result = runner.invoke(root, ["export", "comparisons", "--format", "jsonl", "--out",
                                  str(out), "--split", "valid"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    lines = (out / "comparisons.jsonl").read_text().splitlines()
    assert len(lines) == manifest["rows"] == 35 and manifest["filters"] == {"split": "valid"}
    row = committed_db.scalar(select(DatasetSnapshot))
    assert row.path == str(out.resolve()) and row.sha256 == manifest["files"][0]["sha256"]


def test_cli_export_refuses_bad_input_and_creates_nothing(committed_db, tmp_path):
    _seed(committed_db)
    existing = tmp_path / "taken"
    existing.mkdir()
    cases = [
        (["export", "everything"], "kind should be 'sft', 'rankings'"),
        (["export", "rankings", "--format", "csv"], "format should be 'jsonl' or 'parquet'"),
        (["export", "prompts", "--labeler", "1"], "do not apply"),
        (["export", "rankings", "--since", "yesterday-ish"], "since should be a valid datetime"),
        (["export", "rankings", "--out", str(existing)], "already exists"),
        (["export", "comparisons", "--out", str(tmp_path / "cmp.jsonl")],
         "names the snapshot directory"),
    ]
    for args, message in cases:
        result = runner.invoke(root, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output.lower(), (args, result.output)
    assert committed_db.scalar(select(func.count()).select_from(DatasetSnapshot)) == 0
    assert list(Path(existing).iterdir()) == []
    assert not (tmp_path / "cmp.jsonl").exists()
