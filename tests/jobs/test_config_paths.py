"""A round's config may name only files the deployment owns: a path elsewhere (the worker
often runs as root) is a 422 naming the field, before any check of the data or models."""

import pytest
from sqlalchemy import func, select

from app.auth import service as auth
from app.config import get_settings
from app.jobs.errors import JobError
from app.jobs.models import Job
from app.rounds.models import Round
from app.rounds.stage_config import validate_config
from tests.factories import make_user


@pytest.fixture
def staff(db):  # type: ignore[no-untyped-def]
    _, token = auth.create_token(db=db, user=make_user(db, "researcher"))
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("field", ["pretrain_data", "eval_prompts"])
def test_a_path_outside_the_deployment_is_422_naming_the_field(client, db, staff, field):
    resp = client.post("/api/v1/rounds", json={"config": {"ppo": {field: "/etc/passwd"}}},
                       headers=staff)
    # Refused as a bad request, not for the missing data an empty database would give.
    assert resp.status_code == 422 and f"ppo.{field} must name a file inside" in resp.text
    assert db.scalar(select(func.count()).select_from(Round)) == 0
    assert db.scalar(select(func.count()).select_from(Job)) == 0


def test_dot_dot_and_symbolic_links_out_of_the_data_are_refused(tmp_path):
    data = get_settings().data_dir.resolve()
    link = data / "to-outside"
    link.unlink(missing_ok=True)
    link.symlink_to(tmp_path)
    try:
        for sneaky in (f"{data}/../../etc/passwd", f"{link}/corpus.jsonl"):
            with pytest.raises(JobError, match="ppo.pretrain_data must name a file inside"):
                validate_config({"ppo": {"pretrain_data": sneaky}}, ["ppo"])
    finally:
        link.unlink()


def test_files_in_the_exports_or_an_allowed_directory_are_kept_resolved(tmp_path, monkeypatch):
    exported = get_settings().exports_dir.resolve() / "sub" / ".." / "prompts.jsonl"
    clean = validate_config({"ppo": {"eval_prompts": str(exported), "pretrain_data": ""}},
                            ["ppo"])
    assert clean["ppo"]["eval_prompts"] == str(exported.resolve())
    with pytest.raises(JobError):
        validate_config({"ppo": {"pretrain_data": str(tmp_path / "c.jsonl")}}, ["ppo"])
    monkeypatch.setattr(get_settings(), "train_path_roots", [tmp_path])
    clean = validate_config({"ppo": {"pretrain_data": str(tmp_path / "c.jsonl")}}, ["ppo"])
    assert clean["ppo"]["pretrain_data"] == str((tmp_path / "c.jsonl").resolve())
