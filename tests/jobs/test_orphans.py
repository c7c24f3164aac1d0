"""The store's sweep (app/rounds/orphans.py) against moto's S3 server: an entry no model
version or snapshot names is removed once its commit is past the grace period; a named one
and a young one are kept; a dry run and bad input remove nothing."""

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from app.cli import root
from app.config import get_settings
from app.exports.models import DatasetSnapshot
from app.registry.models import ModelVersion
from app.rounds import orphans
from app.store import Store, Stored

runner = CliRunner()


def _publish(shared: Store, tmp_path: Path, area: str, name: str) -> Stored:
    local = tmp_path / "out" / name
    local.mkdir(parents=True)
    (local / "config.json").write_text(json.dumps({"name": name}))
    return shared.publish(local, area, name)


def _committed(shared: Store) -> set[str]:
    return {e.url for area in orphans.AREAS for e in shared.entries(area)}


def test_sweep_removes_old_unnamed_entries_and_keeps_named_and_young_ones(db, s3, prefix,
                                                                         tmp_path):
    shared = s3.store(prefix, tmp_path / "cache")
    lost_model = _publish(shared, tmp_path, "models", "sft-job1")  # its worker died
    model = _publish(shared, tmp_path, "models", "sft-job2")
    lost_snap = _publish(shared, tmp_path, "exports", "sft-3-ab12")
    snap = _publish(shared, tmp_path, "exports", "grouped-4-cd34")
    time.sleep(1.1)  # S3 keeps times to the second
    cutoff = datetime.now(UTC)
    time.sleep(1.1)
    young = _publish(shared, tmp_path, "models", "rm-job5")  # its row may be on its way
    db.add(ModelVersion(kind="sft", name="sft-job2", path=model.url, sha256=model.sha256))
    db.add(DatasetSnapshot(kind="grouped", state="done", path=snap.url, filters={},
                           options={}, manifest={}))
    db.flush()
    now = cutoff + timedelta(hours=get_settings().store_sweep_grace_hours)
    everything = {lost_model.url, model.url, lost_snap.url, snap.url, young.url}
    assert _committed(shared) == everything

    dry = orphans.sweep(db=db, shared=shared, dry_run=True, now=now)
    assert sorted(dry.removed) == sorted([lost_model.url, lost_snap.url])
    assert _committed(shared) == everything

    swept = orphans.sweep(db=db, shared=shared, now=now)
    assert sorted(swept.removed) == sorted([lost_model.url, lost_snap.url])
    assert sorted(swept.named) == sorted([model.url, snap.url])
    assert swept.young == [young.url]
    assert _committed(shared) == {model.url, snap.url, young.url}
    assert not [k for k in s3.keys(prefix) if "/sft-job1/" in k or "/sft-3-ab12/" in k]
    reader = s3.store(prefix, tmp_path / "reader")
    assert (reader.fetch(model.url, sha256=model.sha256) / "config.json").is_file()


def test_an_entry_published_again_after_the_listing_is_left_alone(s3, prefix, tmp_path):
    shared = s3.store(prefix, tmp_path / "cache")
    _publish(shared, tmp_path, "models", "sft-job9")
    [listed] = shared.entries("models")
    time.sleep(1.1)
    again = tmp_path / "again"
    again.mkdir()
    (again / "config.json").write_text("{}")
    fresh = shared.publish(again, "models", "sft-job9")  # a retry of the job, meanwhile
    assert not shared.retire(listed)
    assert s3.store(prefix, tmp_path / "r").checksum(fresh.url) == fresh.sha256


def test_store_sweep_command_lists_then_removes_and_refuses_without_a_store(
        committed_db, s3, prefix, tmp_path, monkeypatch):
    out = runner.invoke(root, ["store", "sweep"])
    assert out.exit_code == 1 and "No store is configured (RLHF_STORE_URL)" in out.output

    for name, value in s3.settings(prefix).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RLHF_STORE_SWEEP_GRACE_HOURS", "0.0003")  # about a second
    get_settings.cache_clear()
    try:
        shared = s3.store(prefix, tmp_path / "cache")
        lost = _publish(shared, tmp_path, "models", "ppo-job7")
        time.sleep(2.5)
        dry = runner.invoke(root, ["store", "sweep", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert f"would remove {lost.url}" in dry.output and shared.committed(lost.url)
        done = runner.invoke(root, ["store", "sweep", "--json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.output)["removed"] == [lost.url]
        assert not shared.committed(lost.url) and s3.keys(prefix) == []
    finally:
        get_settings.cache_clear()
