"""The shared store against a real S3 API (moto's server, started here): publish, commit,
download into a machine's cache; a failed upload shows nothing; a checksum that does not
match is refused; a store that refuses us or cannot be reached says so, at start-up and on
the job, and nothing is registered."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from pydantic import ValidationError
from sqlalchemy import select

import app.rounds.jobs  # noqa: F401 - registers the export kind
from app import store as store_module
from app.config import Settings, get_settings
from app.exports import service as exports
from app.exports.models import DatasetSnapshot
from app.exports.schemas import ExportCreate
from app.jobs import runner
from app.jobs import service as jobs
from app.jobs.models import Job
from app.store import NotCommitted, Store, StoreError
from tests.factories import make_user, ranked_task
from tests.s3 import BUCKET

REPO = Path(__file__).resolve().parent.parent


def _model_dir(root: Path, weights: bytes = b"w" * 5000) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"n_layer": 1}')
    (root / "weights.bin").write_bytes(weights)
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.json").write_text('{"a": 1}')
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_publish_then_fetch_on_another_machine_round_trips(s3, prefix, tmp_path):
    writer = s3.store(prefix, tmp_path / "writer-cache")
    local = _model_dir(tmp_path / "sft-job1")
    expected = _files(local)
    stored = writer.publish(local, "models", "sft-job1")

    assert stored.url == f"s3://{BUCKET}/{prefix}/models/sft-job1"
    assert stored.sha256 == writer.checksum(stored.url) and stored.files == 3
    assert f"{prefix}/models/sft-job1/commit.json" in s3.keys(prefix)
    assert not local.exists() and _files(tmp_path / "writer-cache" / stored.sha256) == expected

    reader = s3.store(prefix, tmp_path / "reader-cache")
    got = reader.fetch(stored.url, sha256=stored.sha256)
    assert got == (tmp_path / "reader-cache" / stored.sha256).resolve()
    assert _files(got) == expected
    assert reader.moved.down_files == 3 and reader.moved.down_bytes == stored.bytes
    assert reader.fetch(f"{stored.url}/tokenizer/vocab.json").read_text() == '{"a": 1}'
    assert reader.moved.cache_hits == 1 and reader.moved.down_files == 3  # not again

    # Published again under the same name: a new checksum, read anew, never the stale copy;
    # the earlier upload's objects are gone.
    again = writer.publish(_model_dir(tmp_path / "v2", b"v" * 10), "models", "sft-job1")
    assert again.sha256 != stored.sha256
    assert (reader.fetch(again.url) / "weights.bin").read_bytes() == b"v" * 10
    assert len(s3.keys(f"{prefix}/models/sft-job1/")) == 4  # 3 files and the commit


def test_file_store_commits_by_rename_and_round_trips(tmp_path):
    root = tmp_path / "shared"
    writer = Store(f"file://{root}", cache_dir=tmp_path / "w")
    local = _model_dir(tmp_path / "rm-job3")
    expected = _files(local)
    stored = writer.publish(local, "models", "rm-job3")
    assert stored.url == f"file://{root}/models/rm-job3"
    entry = {p.name: p.is_dir() for p in (root / "models" / "rm-job3").iterdir()}
    assert entry.pop("commit.json") is False and list(entry.values()) == [True]  # + its files
    assert not list(root.rglob("*.tmp-*"))
    got = Store(f"file://{root}", cache_dir=tmp_path / "r").fetch(stored.url,
                                                                  sha256=stored.sha256)
    assert _files(got) == expected
    # The checksum is the files', not the upload's: the same files again, the same checksum.
    again = writer.publish(_model_dir(tmp_path / "copy"), "models", "rm-job3")
    assert again.sha256 == stored.sha256


def test_failed_upload_leaves_nothing_visible(s3, prefix, tmp_path):
    """A user refused the weights file (a real IAM deny) fails mid-upload."""
    iam = boto3.client("iam", endpoint_url=s3.endpoint, region_name="us-east-1",
                       aws_access_key_id=s3.key, aws_secret_access_key=s3.secret)
    user = f"partial-{prefix}"
    iam.create_user(UserName=user)
    made = iam.create_access_key(UserName=user)["AccessKey"]
    iam.put_user_policy(UserName=user, PolicyName="no-weights", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:PutObject",
             "Resource": f"arn:aws:s3:::{BUCKET}/*/weights.bin"}]}))
    store = s3.store(prefix, tmp_path / "cache", access_key=made["AccessKeyId"],
                     secret_key=made["SecretAccessKey"])
    local = _model_dir(tmp_path / "sft-job2")

    with pytest.raises(StoreError, match="Publishing sft-job2 to the store failed: .*refused"):
        store.publish(local, "models", "sft-job2")
    assert s3.keys(prefix) == []  # config.json went up first, and was removed
    url = store.url_for("models", "sft-job2")
    assert not store.committed(url)
    with pytest.raises(NotCommitted):
        s3.store(prefix, tmp_path / "reader").fetch(url)
    assert (local / "weights.bin").exists()  # the local copy is left for a retry


def test_checksum_mismatch_is_refused(s3, prefix, tmp_path):
    stored = s3.store(prefix, tmp_path / "w").publish(_model_dir(tmp_path / "m"), "models", "m")
    reader = s3.store(prefix, tmp_path / "r")
    with pytest.raises(StoreError, match="not the .* registered for it: refusing"):
        reader.fetch(stored.url, sha256="0" * 64)

    # An object changed behind the commit's back: its sha256 no longer matches.
    key = next(k for k in s3.keys(prefix) if k.endswith("/weights.bin"))
    s3.client.put_object(Bucket=BUCKET, Key=key, Body=b"tampered")
    with pytest.raises(StoreError, match="weights.bin does not match the sha256"):
        reader.fetch(stored.url, sha256=stored.sha256)
    # Nothing half-downloaded in the cache, beside the entry's lock file.
    assert [p.name for p in (tmp_path / "r").iterdir()] == [".locks"]


def test_wrong_credentials_and_unreachable_store_say_so(s3, prefix, tmp_path):
    with pytest.raises(StoreError, match="refused our credentials"):
        s3.store(prefix, tmp_path / "c", secret_key="wrong").check()
    with pytest.raises(StoreError, match="cannot be reached"):
        s3.store(prefix, tmp_path / "c", endpoint_url="http://127.0.0.1:9").check()
    s3.store(prefix, tmp_path / "c").check()
    assert s3.keys(prefix) == []  # the probe is removed


def test_settings_refuse_a_store_url_that_is_not_file_or_s3():
    for bad in ("http://minio:9000/rlhf", "s3://", "/srv/store"):
        with pytest.raises(ValidationError, match="RLHF_STORE_URL must be a file:///path"):
            Settings(store_url=bad)
    assert Settings(store_url="file:///srv/store").store_url == "file:///srv/store"
    with pytest.raises(ValidationError, match="a shared store goes in RLHF_STORE_URL"):
        Settings(models_dir="s3://rlhf/models")


def _start(args: list[str], env: dict[str, str],
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_web_and_worker_refuse_to_start_on_a_store_that_refuses_them(s3, prefix, tmp_path):
    env = {**os.environ, **s3.settings(prefix), "RLHF_STORE_SECRET_KEY": "wrong",
           "RLHF_DATA_DIR": str(tmp_path)}
    web = _start(["-c", "from app.main import create_app; create_app()"], env)
    assert web.returncode != 0 and "refused our credentials" in web.stderr, web.stderr
    worker = _start(["-m", "celery", "-A", "app.worker", "worker", "--pool", "solo", "-Q",
                     "default", "--without-mingle", "--without-gossip"],
                    {**env, "RLHF_STORE_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert worker.returncode != 0, worker.stderr
    assert "The worker does not start" in worker.stderr and "cannot be reached" in worker.stderr


@pytest.mark.slow
def test_beat_refuses_to_start_on_a_store_it_cannot_reach(s3, prefix, tmp_path):
    """The beat sends the store's sweep: like the web and the workers, it checks the store
    first (a beat that starts would run until stopped: the timeout fails the test)."""
    env = {**os.environ, **s3.settings(prefix), "RLHF_DATA_DIR": str(tmp_path),
           "RLHF_REDIS_URL": "", "RLHF_STORE_ENDPOINT_URL": "http://127.0.0.1:9"}
    beat = _start(["-m", "celery", "-A", "app.worker", "beat", "--loglevel", "WARNING"], env,
                  timeout=60)
    assert beat.returncode != 0, beat.stderr
    assert "The beat does not start" in beat.stderr and "cannot be reached" in beat.stderr


def _export_job(db) -> int:  # type: ignore[no-untyped-def]
    ranked_task(db, 4, [(make_user(db), [[0], [1], [2], [3]])], split="train")
    job = jobs.submit(db=db, kind="export", config={"stages": ["rm"]})
    db.commit()
    return job.id


def test_export_job_publishes_its_snapshot_and_the_web_reads_it_back(committed_db, store_env,
                                                                     s3, prefix):
    db = committed_db
    assert runner.run_job(_export_job(db))["state"] == "succeeded"
    db.expire_all()
    snaps = list(db.scalars(select(DatasetSnapshot).order_by(DatasetSnapshot.id)))
    assert {s.kind for s in snaps} == {"grouped", "sft"} and all(s.state == "done" for s in snaps)
    for snap in snaps:
        assert snap.path.startswith(f"s3://{BUCKET}/{prefix}/exports/")
        data = exports.file_for(db=db, snapshot_id=snap.id)  # what the download route sends
        assert hashlib.sha256(data.read_bytes()).hexdigest() == snap.sha256
        assert str(data).startswith(str(get_settings().data_dir.resolve() / "store-cache"))
        assert not (get_settings().exports_dir / snap.path.rsplit("/", 1)[-1]).exists()


def test_export_job_on_a_store_refusing_us_fails_with_why_and_leaves_nothing(
        committed_db, store_env, s3, prefix, monkeypatch):
    db = committed_db
    monkeypatch.setenv("RLHF_STORE_SECRET_KEY", "wrong")
    get_settings.cache_clear()
    job_id = _export_job(db)
    assert runner.run_job(job_id)["state"] == "failed"
    db.expire_all()
    job = db.get(Job, job_id)
    assert "refused our credentials" in job.error and "RLHF_STORE_ACCESS_KEY" in job.error
    assert not [s for s in db.scalars(select(DatasetSnapshot)) if s.state == "done"]
    assert s3.keys(prefix) == []


def test_no_store_keeps_snapshots_on_local_disk(db):
    assert not get_settings().store_url
    ranked_task(db, 4, [(make_user(db), [[0], [1], [2], [3]])], split="train")
    snap = exports.create_snapshot(db=db, user=None, request=ExportCreate(kind="grouped"))
    exports.build(db=db, snapshot=snap)
    assert Path(snap.path).is_dir() and Path(snap.path).parent == get_settings().exports_dir


def _cached(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if not p.name.startswith(".")} if root.is_dir() \
        else set()


def test_cache_evicts_the_least_recently_used_entries_past_its_bound(s3, prefix, tmp_path):
    writer = s3.store(prefix, tmp_path / "w")
    made = {n: writer.publish(_model_dir(tmp_path / n, n.encode() * 1000), "models", n)
            for n in ("a", "b", "c", "d")}  # about 1 KB each
    cache = tmp_path / "r"
    reader = s3.store(prefix, cache, cache_max_bytes=2500)  # room for two
    reader.fetch(made["a"].url)
    reader.fetch(made["b"].url)
    reader.fetch(made["a"].url)  # a hit: a is now the more recently used
    assert _cached(cache) == {made["a"].sha256, made["b"].sha256}
    reader.fetch(made["c"].url)
    assert _cached(cache) == {made["a"].sha256, made["c"].sha256}  # b went, a stayed
    assert reader.moved.evicted == 1 and reader.moved.evicted_bytes == made["b"].bytes
    assert not list(cache.glob(".tmp-*"))  # renamed away, then removed

    # A bound below one entry: the entry just fetched stays, whatever its size.
    tight = s3.store(prefix, cache, cache_max_bytes=10)
    got = tight.fetch(made["d"].url)
    assert _cached(cache) == {made["d"].sha256}
    assert _files(got) == _files(tmp_path / "w" / made["d"].sha256)


def test_cache_never_evicts_an_entry_in_use(s3, prefix, tmp_path):
    writer = s3.store(prefix, tmp_path / "w")
    made = {n: writer.publish(_model_dir(tmp_path / n, n.encode() * 1000), "models", n)
            for n in ("a", "b", "c")}
    cache = tmp_path / "shared-cache"
    # Two workers on one machine share the cache directory; one job reads a.
    first, second = (s3.store(prefix, cache, cache_max_bytes=10) for _ in range(2))
    with store_module.holding():
        used = first.fetch(made["a"].url)
        second.fetch(made["b"].url)  # over the bound: a is older, and in use
        assert _cached(cache) == {made["a"].sha256, made["b"].sha256}
        assert (used / "weights.bin").read_bytes() == b"a" * 1000
    second.fetch(made["c"].url)  # the job ended: a and b may go now
    assert _cached(cache) == {made["c"].sha256}


def test_publishing_evicts_older_entries_but_keeps_what_it_published(s3, prefix, tmp_path):
    cache = tmp_path / "cache"
    writer = s3.store(prefix, cache, cache_max_bytes=1500)
    first = writer.publish(_model_dir(tmp_path / "a", b"a" * 1000), "models", "a")
    second = writer.publish(_model_dir(tmp_path / "b", b"b" * 1000), "models", "b")
    assert _cached(cache) == {second.sha256}
    assert writer.moved.evicted == 1 and s3.store(prefix, tmp_path / "r").committed(first.url)


def test_settings_bound_the_cache_and_refuse_a_bound_that_is_not_positive(tmp_path):
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ValidationError, match="store_cache_max_gb"):
            Settings(store_cache_max_gb=bad)
    settings = Settings(store_url=f"file://{tmp_path}/s", data_dir=tmp_path,
                        store_cache_max_gb=0.5)
    shared = store_module.current(settings)
    assert shared is not None and shared.cache.max_bytes == 500_000_000
