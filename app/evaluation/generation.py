"""Generating a campaign's outputs: every version samples the campaign's prompts with the
same recorded settings (`python -m training sample`), then the compare tasks are made; in a
round, the reward model then scores the pairs people will judge (`score_pairs`).

`run` is the whole background step. It is handed the job engine's pieces (a session
factory, a work directory, a runner for `python -m training …`, a progress callback);
app/evaluation/jobs.py registers it as the `evaluation_generate` job kind, and the tests
run it with a stand-in for the GPU sampler.
"""

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from app.evaluation import service
from app.evaluation.models import EvaluationItem
from app.evaluation.provenance import Version, get_version
from app.prompts.models import Candidate, Prompt

RunTraining = Callable[[list[str]], Any]
Progress = Callable[[float], Any]
SessionFactory = Callable[[], AbstractContextManager[Session]]


def sample_argv(*, model: str, prompts: Path, out: Path, sampling: dict[str, Any]) -> list[str]:
    """The `python -m training` arguments that sample one output per prompt."""
    return ["sample", "--model", model, "--prompts", str(prompts), "--out", str(out),
            "--k", "1", "--temperature", str(sampling["temperature"]),
            "--top-p", str(sampling["top_p"]),
            "--max-new-tokens", str(sampling["max_new_tokens"]), "--seed", str(sampling["seed"])]


def read_outputs(path: Path) -> dict[int, str]:
    """{prompt id: first candidate's text} from a candidate-import JSONL file."""
    out: dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("prompt_id") is not None and row.get("candidates"):
                out[int(row["prompt_id"])] = str(row["candidates"][0]["text"])
    return out


def generate_outputs(*, versions: list[Version], prompts: dict[int, str],
                     sampling: dict[str, Any], workdir: Path, run_training: RunTraining,
                     progress: Progress | None = None) -> dict[int, dict[int, str]]:
    """Sample every version on the prompts; {version id: {prompt id: text}}."""
    workdir.mkdir(parents=True, exist_ok=True)
    prompt_file = workdir / "prompts.jsonl"
    with open(prompt_file, "w", encoding="utf-8") as f:
        for pid, text in prompts.items():
            f.write(json.dumps({"prompt_id": pid, "prompt": text}, ensure_ascii=False) + "\n")
    outputs: dict[int, dict[int, str]] = {}
    for n, version in enumerate(versions):
        out = workdir / f"outputs-{version.id}.jsonl"
        run_training(sample_argv(model=version.path, prompts=prompt_file, out=out,
                                 sampling=sampling))
        outputs[version.id] = read_outputs(out)
        if progress:
            progress((n + 1) / (len(versions) + 1))
    return outputs


def run(*, evaluation_id: int, workdir: Path, session: SessionFactory,
        run_training: RunTraining, progress: Progress | None = None) -> dict[str, Any]:
    """Generate the outputs of a campaign and make its tasks; the job's outputs.

    Safe to run twice: a campaign that already has items is not generated again.
    """
    with session() as db:
        ev = service.get(db=db, evaluation_id=evaluation_id)
        if ev.state in (service.LABELING, service.COMPLETE):
            return {"evaluation_id": evaluation_id, "skipped": "already generated"}
        versions = [get_version(db=db, version_id=v) for v in [ev.baseline_id, *ev.model_ids]]
        prompts = dict(db.execute(select(Prompt.id, Prompt.text)
                                  .where(Prompt.id.in_(ev.prompt_ids))).all())
        sampling = dict(ev.sampling)
    try:
        outputs = generate_outputs(versions=versions, prompts=prompts, sampling=sampling,
                                   workdir=workdir, run_training=run_training,
                                   progress=progress)
    except Exception as exc:
        with session() as db:
            service.mark_failed(db=db, evaluation_id=evaluation_id, error=str(exc))
        raise
    with session() as db:
        items = service.create_items(db=db, evaluation_id=evaluation_id, outputs=outputs)
        identical = service.get(db=db, evaluation_id=evaluation_id).identical_pairs
    if progress:
        progress(1.0)
    return {"evaluation_id": evaluation_id, "tasks": len(items), "identical_pairs": identical}


def score_pairs(*, evaluation_id: int, reward_model: dict[str, Any], workdir: Path,
                session: SessionFactory, run_training: RunTraining) -> dict[str, Any] | None:
    """The reward model's verdict on the campaign's pairs: for each candidate version, the
    share of its compare items whose answer the RM scores above the baseline's (a tie
    counts half), stored on the campaign as `rm_verdict` beside what people will say of the
    same pairs. None (and nothing stored) for a campaign with nothing to judge.

    `reward_model`: {"id", "path"} of the RM the candidate was trained against. Safe to run
    twice: the scores are the same.
    """
    base = aliased(Candidate)
    with session() as db:
        rows = db.execute(
            select(EvaluationItem.id, EvaluationItem.model_id, Prompt.text, Candidate.text,
                   base.text)
            .join(Prompt, Prompt.id == EvaluationItem.prompt_id)
            .join(Candidate, Candidate.id == EvaluationItem.candidate_id)
            .join(base, base.id == EvaluationItem.baseline_candidate_id)
            .where(EvaluationItem.evaluation_id == evaluation_id)
            .order_by(EvaluationItem.id)).all()
    if not rows:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    pairs, scored = workdir / "pairs.jsonl", workdir / "pairs-scored.jsonl"
    with open(pairs, "w", encoding="utf-8") as f:
        for _, _, prompt, text, base_text in rows:  # one line per item, in the rows' order
            f.write(json.dumps({"prompt": prompt, "candidates": [
                {"text": text}, {"text": base_text}]}, ensure_ascii=False) + "\n")
    run_training(["score", "--reward-model", str(reward_model["path"]), "--data", str(pairs),
                  "--out", str(scored)])
    wins: dict[int, list[float]] = {}
    with open(scored, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    for (_, model_id, *_texts), row in zip(rows, lines, strict=True):
        mine, theirs = (c["score"] for c in row["candidates"])
        wins.setdefault(model_id, []).append(
            1.0 if mine > theirs else 0.0 if mine < theirs else 0.5)
    verdict = {"reward_model_id": reward_model.get("id"), "by_model": {
        str(model_id): {"win_rate": sum(w) / len(w), "n": len(w), "ties": w.count(0.5)}
        for model_id, w in wins.items()}}
    with session() as db:
        service.get(db=db, evaluation_id=evaluation_id).rm_verdict = verdict
    return verdict
