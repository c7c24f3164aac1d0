"""`rlhf-studio eval …` against the real database."""

import csv
import io
import json

from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import root
from app.evaluation.models import Evaluation
from tests.evaluation.factories import make_prompts, make_version

runner = CliRunner()


def test_eval_create_then_results(committed_db, monkeypatch):
    db = committed_db
    make_prompts(db, 3)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    db.commit()
    sent: list[int] = []
    monkeypatch.setattr("app.evaluation.jobs.dispatch", sent.append)
    result = runner.invoke(root, ["eval", "create", "--model", str(policy.id), "--baseline",
                                  str(base.id), "--n-prompts", "2", "--overlap", "2",
                                  "--judges", "all", "--temperature", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    ev = db.get(Evaluation, shown["id"])
    assert ev.sampling["temperature"] == 0.3 and ev.overlap == 2
    assert ev.job_id is not None and sent == [ev.job_id]
    out = runner.invoke(root, ["eval", "results", str(ev.id), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["results"][0]["model_id"] == policy.id and data["results"][0]["n"] == 0
    rows = list(csv.DictReader(io.StringIO(runner.invoke(
        root, ["eval", "results", str(ev.id), "--csv"]).output)))
    assert rows[0]["model_id"] == str(policy.id)


def test_eval_create_refuses_bad_input_and_creates_nothing(committed_db):
    db = committed_db
    make_prompts(db, 1)
    base, sft2 = make_version(db, "sft"), make_version(db, "sft")
    db.commit()
    cases = [
        (["--model", str(base.id), "--baseline", str(base.id), "--n-prompts", "1"],
         "both the baseline and a candidate"),
        (["--model", str(sft2.id), "--baseline", str(base.id), "--n-prompts", "1"],
         "not a policy"),
        (["--model", "424242", "--baseline", str(base.id), "--n-prompts", "1"],
         "no model version 424242"),
        (["--model", str(sft2.id), "--baseline", str(base.id), "--n-prompts", "1",
          "--judges", "anyone"], "judges"),
    ]
    for args, message in cases:
        result = runner.invoke(root, ["eval", "create", *args])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
    assert db.scalar(select(func.count()).select_from(Evaluation)) == 0
    missing = runner.invoke(root, ["eval", "results", "999"])
    assert missing.exit_code == 1 and "no evaluation 999" in missing.output
