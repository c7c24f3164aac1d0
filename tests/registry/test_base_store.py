"""A base model directory of one machine's, with a store (moto's S3 server): published once
per checksum, so the base version has a store URL that workers on other machines read."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.jobs.errors import JobFailed
from app.jobs.kinds import JobContext
from app.registry import service as registry
from app.registry.models import ModelVersion
from tests.s3 import BUCKET


def _base_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "model.safetensors").write_bytes(b"m" * 4000)
    (root / "tokenizer.json").write_text('{"model": {}}')
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def base_env(store_env, monkeypatch) -> Callable[[str], None]:  # type: ignore[no-untyped-def]
    """Set RLHF_BASE_MODEL (with the store's settings) as every process would read it."""

    def use(path: str) -> None:
        monkeypatch.setenv("RLHF_BASE_MODEL", path)
        get_settings.cache_clear()

    return use


def _ctx(tmp_path: Path) -> JobContext:
    return JobContext(job_id=0, kind="sft", config={}, inputs={}, workdir=tmp_path)


def test_a_local_base_directory_is_published_once_and_read_on_other_machines(
        committed_db, base_env, s3, prefix, tmp_path):
    local = _base_dir(tmp_path / "llama-mini")
    expected = _files(local)
    base_env(str(local))

    first = registry.ensure_base(_ctx(tmp_path))
    assert first["path"].startswith(f"s3://{BUCKET}/{prefix}/models/base-")
    reader = s3.store(prefix, tmp_path / "other-machine")
    assert first["sha256"] == reader.checksum(first["path"])
    assert _files(reader.fetch(first["path"], sha256=first["sha256"])) == expected
    assert _files(local) == expected  # the directory itself is left as it was
    version = committed_db.get(ModelVersion, first["id"])
    assert (version.kind, version.name) == ("base", str(local))

    # Asked again: the same version, nothing uploaded again.
    keys = s3.keys(prefix)
    assert registry.ensure_base(_ctx(tmp_path)) == first
    assert s3.keys(prefix) == keys

    # A machine without the directory, with the same setting, reads the published one.
    shutil.move(local, tmp_path / "moved-away")
    assert registry.ensure_base(_ctx(tmp_path)) == first


def test_a_base_directory_on_no_machine_fails_clearly_and_registers_nothing(
        committed_db, base_env, s3, prefix, tmp_path):
    base_env(str(tmp_path / "no-such-base"))
    with pytest.raises(JobFailed, match="not on this machine, and no machine that has it"):
        registry.ensure_base(_ctx(tmp_path))
    assert committed_db.scalars(select(ModelVersion)).all() == []
    assert s3.keys(prefix) == []
