"""`rlhf-studio prompts import` and `candidates import` end to end (real commits)."""

import json

from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import root
from app.prompts.models import Candidate, Prompt
from app.queue.models import Task


def test_cli_imports_prompts_then_candidates_with_rank_tasks(committed_db, tmp_path):
    db = committed_db
    prompts_file = tmp_path / "p.jsonl"
    prompts_file.write_text("\n".join([
        json.dumps({"text": "Suggest names for a bakery", "category": "brainstorming"}),
        "{broken",
    ]))
    strict = CliRunner().invoke(root, ["prompts", "import", str(prompts_file), "--strict"])
    assert strict.exit_code == 1 and "line 2" in strict.output
    assert db.scalar(select(func.count()).select_from(Prompt)) == 0
    ok = CliRunner().invoke(root, ["prompts", "import", str(prompts_file)])
    assert ok.exit_code == 0 and "accepted 1" in ok.output and "line 2" in ok.output

    cands = tmp_path / "c.jsonl"
    cands.write_text(json.dumps({"prompt": "Suggest names for a bakery", "candidates": [
        {"text": f"Name {i}", "model": "sft"} for i in range(4)]}))
    result = CliRunner().invoke(root, ["candidates", "import", str(cands), "--rank-tasks",
                                       "--overlap", "3"])
    assert result.exit_code == 0, result.output
    assert db.scalar(select(func.count()).select_from(Prompt)) == 1  # reused, not duplicated
    assert db.scalar(select(func.count()).select_from(Candidate)) == 4
    assert db.scalar(select(Task.required_labels)) == 3
