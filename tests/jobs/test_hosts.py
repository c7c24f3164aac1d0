"""Workers on different hosts: the web process, a default worker and a gpu worker, each with
a data directory of its own (no local disk shared), meeting only in PostgreSQL, Redis and the
store (moto's S3 server). A round trains, registers, promotes and generates; every model it
reads or writes moves through the store, and the web serves a snapshot it never wrote."""

import hashlib
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.jobs.models import Job
from tests.jobs.loop import SMALL, label_everything, labeler_token, seed_tasks
from tests.jobs.stack import Stack
from tests.s3 import BUCKET

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]
HOSTS = ("web", "default", "gpu")
DOWN = re.compile(r"store: downloaded (\d+) files \((\d+) bytes\)")


@pytest.fixture
def prefix() -> str:
    return f"hosts{uuid.uuid4().hex[:8]}"


@pytest.fixture
def stack(committed_db, tiny_base, s3, prefix, tmp_path: Path) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    # The tiny base is published once beforehand, as the first worker to need it would:
    # building it takes longer than the round.
    seed = tmp_path / "seed" / "base-tiny"
    shutil.copytree(tiny_base, seed)
    s3.store(prefix, tmp_path / "seed-cache").publish(seed, "models", "base-tiny")
    hosts = {h: {"RLHF_DATA_DIR": str(tmp_path / h),
                 "RLHF_MODELS_DIR": str(tmp_path / h / "models"),
                 "RLHF_EXPORTS_DIR": str(tmp_path / h / "exports")} for h in HOSTS}
    for host in HOSTS:
        (tmp_path / host).mkdir()
    store = {k.removeprefix("RLHF_").lower(): v for k, v in s3.settings(prefix).items()}
    s = Stack("redis", tmp_path / "web", hosts=hosts, **store)
    try:
        yield s
    finally:
        s.close()


def test_round_with_each_process_on_its_own_disk_moves_models_through_the_store(
        stack, committed_db, s3, prefix, staff_token, tmp_path):
    seed_tasks(committed_db)
    label_everything(stack.http, labeler_token(committed_db))
    made = stack.http.post("/api/v1/rounds", headers=staff_token, json={
        "config": SMALL, "promote": True,
        "generate": {"k": 4, "n_prompts": 3, "max_new_tokens": 12, "overlap": 1}})
    assert made.status_code == 202, made.text
    rnd = stack.wait_round(made.json()["round_id"], staff_token)
    assert rnd["state"] == "succeeded", [(j["kind"], j["error"]) for j in rnd["jobs"]]

    # Every version lives in the store, registered with the store's checksum.
    reader = s3.store(prefix, tmp_path / "reader-cache")
    models = {m["kind"]: m for m in stack.get("/api/v1/models", staff_token)}
    assert {"base", "sft", "rm", "policy"} <= set(models)
    for version in models.values():
        assert version["path"].startswith(f"s3://{BUCKET}/{prefix}/models/"), version
        assert version["sha256"] == reader.checksum(version["path"])
    assert "policy:active" in models["policy"]["aliases"]
    generated = next(j for j in rnd["jobs"] if j["kind"] == "generate")["outputs"]
    assert generated["tasks"] >= 1

    # The gpu worker read the snapshots and models from its cache; no model stayed on its
    # disk outside it, and the web and default hosts never held one.
    cache = {h: tmp_path / h / "store-cache" for h in HOSTS}
    assert len([d for d in cache["gpu"].iterdir() if not d.name.startswith(".")]) >= 5
    assert not list((tmp_path / "gpu" / "models").glob("*-job*"))
    assert not list(tmp_path.glob("web/**/config.json"))
    assert not list(tmp_path.glob("default/**/config.json"))

    # The web serves a snapshot the default worker wrote: through the store.
    export = next(j for j in rnd["jobs"] if j["kind"] == "export")["outputs"]["snapshots"]
    got = stack.http.get(f"/api/v1/exports/{export['sft']['id']}/download", headers=staff_token)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == \
        export["sft"]["sha256"]

    # The measure: what the round put in the store (every object but the seeded base) and
    # what its jobs downloaded (their logs), and how often a cache answered instead.
    listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    up = [o["Size"] for o in listed if "/models/base-tiny/" not in o["Key"]]
    down, hits = [0, 0], 0
    committed_db.expire_all()
    for job in committed_db.scalars(select(Job).where(Job.round_id == rnd["id"])):
        for files, size in DOWN.findall(job.log_tail or ""):
            down = [down[0] + int(files), down[1] + int(size)]
        hits += (job.log_tail or "").count(" from the cache")
    print(f"\nstore traffic of one round: uploaded {len(up)} objects, {sum(up)} bytes; "
          f"downloaded {down[0]} files, {down[1]} bytes; {hits} reads from the cache")
    assert down[0] >= 3 and hits >= 1
