"""The background step: sample every version with the recorded settings, then make tasks."""

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.evaluation import generation, service
from app.evaluation.models import EvaluationItem
from tests.evaluation.factories import make_prompts, make_version, spec


def _session(db):  # type: ignore[no-untyped-def]
    @contextmanager
    def scope():  # type: ignore[no-untyped-def]
        yield db
        db.flush()
    return scope


def _fake_sampler(calls: list[list[str]], same_as_baseline: bool = False):  # type: ignore[no-untyped-def]
    """Stands in for `python -m training sample` (the GPU step): writes its output file."""
    def run(argv: list[str]) -> None:
        calls.append(argv)
        args = dict(zip(argv[1::2], argv[2::2], strict=False))
        rows = [json.loads(line) for line in Path(args["--prompts"]).read_text().splitlines()]
        text = "same" if same_as_baseline else args["--model"]
        with open(args["--out"], "w") as f:
            for row in rows:
                f.write(json.dumps({"prompt": row["prompt"], "prompt_id": row["prompt_id"],
                                    "candidates": [{"text": f"{text} {row['prompt_id']}",
                                                    "model": "x"}]}) + "\n")
    return run


def test_run_samples_each_version_with_the_same_settings_then_makes_tasks(db, tmp_path):
    make_prompts(db, 3)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=3,
        sampling={"temperature": 0.5, "top_p": 0.9, "max_new_tokens": 32, "seed": 7}))
    calls: list[list[str]] = []
    seen: list[float] = []
    out = generation.run(evaluation_id=ev.id, workdir=tmp_path, session=_session(db),
                         run_training=_fake_sampler(calls), progress=seen.append)
    assert out == {"evaluation_id": ev.id, "tasks": 3, "identical_pairs": 0}
    assert [c[2] for c in calls] == [base.path, policy.path]
    for argv in calls:
        assert argv[0] == "sample" and argv[argv.index("--k") + 1] == "1"
        assert argv[argv.index("--temperature") + 1] == "0.5"
        assert argv[argv.index("--top-p") + 1] == "0.9"
        assert argv[argv.index("--max-new-tokens") + 1] == "32"
        assert argv[argv.index("--seed") + 1] == "7"
    assert seen[-1] == 1.0 and ev.state == "labeling"
    # Run again (a retried job): nothing is sampled or created twice.
    again = generation.run(evaluation_id=ev.id, workdir=tmp_path, session=_session(db),
                           run_training=_fake_sampler(calls))
    assert again["skipped"] and len(calls) == 2
    assert db.scalar(select(func.count()).select_from(EvaluationItem)) == 3


def test_identical_outputs_make_no_task(db, tmp_path):
    make_prompts(db, 2)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=2))
    out = generation.run(evaluation_id=ev.id, workdir=tmp_path, session=_session(db),
                         run_training=_fake_sampler([], same_as_baseline=True))
    assert out["tasks"] == 0 and out["identical_pairs"] == 2


def test_a_failed_sampler_marks_the_campaign_failed(db, tmp_path):
    make_prompts(db, 1)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=1))

    def broken(argv: list[str]) -> None:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError):
        generation.run(evaluation_id=ev.id, workdir=tmp_path, session=_session(db),
                       run_training=broken)
    assert ev.state == "failed" and "out of memory" in (ev.error or "")
    assert db.scalar(select(func.count()).select_from(EvaluationItem)) == 0


TINY_FLAGS = ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--n-positions", "256",
              "--pretrain-steps", "0"]


@pytest.mark.slow
def test_the_job_engine_runs_a_campaigns_generation_on_the_tiny_model(committed_db, tmp_path):
    """The `evaluation_generate` kind through the jobs engine: the real sampler as a child
    process on the tiny offline model, then the campaign's tasks."""
    from app.evaluation import jobs as tasks
    from app.jobs import runner
    from app.jobs.models import Job
    from training.__main__ import main as training_main

    db = committed_db
    model = tmp_path / "tiny"
    assert training_main(["--threads", "1", "tiny", "--out", str(model), *TINY_FLAGS]) == 0
    (tmp_path / "same").symlink_to(model)  # a second version: the same weights, another path
    make_prompts(db, 2)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    base.path, policy.path = str(model), str(tmp_path / "same")
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=2,
        sampling={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "seed": 1}))
    job_id = tasks.start(db=db, evaluation=ev, user=None)
    db.commit()
    assert runner.run_job(job_id)["state"] == "succeeded"
    db.expire_all()
    job, ev = db.get(Job, job_id), db.get(type(ev), ev.id)
    assert job.outputs["evaluation_id"] == ev.id
    # Same weights and seed on both sides: identical outputs, which nobody is asked about;
    # a campaign left with nothing to judge is complete at once.
    made = db.scalar(select(func.count()).select_from(EvaluationItem))
    assert made + ev.identical_pairs == 2 and job.outputs["tasks"] == made
    assert ev.state == ("labeling" if made else "complete")


def _fake_scorer(calls: list[list[str]]):  # type: ignore[no-untyped-def]
    """Stands in for `python -m training score`: an RM that likes longer answers."""
    def run(argv: list[str]) -> None:
        calls.append(argv)
        args = dict(zip(argv[1::2], argv[2::2], strict=False))
        with open(args["--data"]) as f, open(args["--out"], "w") as out:
            for line in f:
                row = json.loads(line)
                for cand in row["candidates"]:
                    cand["score"] = float(len(cand["text"]))
                out.write(json.dumps(row) + "\n")
    return run


def test_the_rm_scores_the_pairs_people_judge_and_the_campaign_keeps_its_verdict(db, tmp_path):
    make_prompts(db, 3)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    policy.path = "/models/a-much-longer-policy-path"  # the fake sampler writes the path
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=3))
    generation.run(evaluation_id=ev.id, workdir=tmp_path / "gen", session=_session(db),
                   run_training=_fake_sampler([]))
    calls: list[list[str]] = []
    verdict = generation.score_pairs(
        evaluation_id=ev.id, reward_model={"id": 41, "path": "/models/rm-9"},
        workdir=tmp_path / "rm", session=_session(db), run_training=_fake_scorer(calls))
    assert calls[0][:3] == ["score", "--reward-model", "/models/rm-9"]
    pairs = [json.loads(x) for x in (tmp_path / "rm" / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 3 and all(len(p["candidates"]) == 2 for p in pairs)
    assert all(p["candidates"][0]["text"].startswith(policy.path) for p in pairs)  # policy first
    assert verdict == {"reward_model_id": 41,
                       "by_model": {str(policy.id): {"win_rate": 1.0, "n": 3, "ties": 0}}}
    assert service.get(db=db, evaluation_id=ev.id).rm_verdict == verdict
    described = service.describe(db=db, evaluations=[ev])[0]
    assert described["rm_verdict"]["by_model"][str(policy.id)]["n"] == 3


def test_a_campaign_with_nothing_to_judge_is_not_scored(db, tmp_path):
    make_prompts(db, 2)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=2))
    generation.run(evaluation_id=ev.id, workdir=tmp_path, session=_session(db),
                   run_training=_fake_sampler([], same_as_baseline=True))
    calls: list[list[str]] = []
    assert generation.score_pairs(evaluation_id=ev.id, reward_model={"id": 1, "path": "/rm"},
                                  workdir=tmp_path / "rm", session=_session(db),
                                  run_training=_fake_scorer(calls)) is None
    assert calls == [] and ev.rm_verdict is None
