"""A training stage as the worker runs it: a child process whose step events become the
job's progress and metrics (under TRL's names), and that SIGTERM stops at a step boundary
without leaving an output directory."""

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from app.jobs.child import command, failure_sentence, run_child, trl_names
from app.jobs.errors import JobCancelled, JobFailed
from app.jobs.kinds import JobContext
from training import contract


def _ctx(tmp_path: Path) -> JobContext:
    return JobContext(job_id=1, kind="sft", config={}, inputs={}, workdir=tmp_path,
                      child_timeout_s=20)


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": f"answer {i}"}) + "\n"
                            for i in range(6)))
    return path


def _argv(base: Path, data: Path, out: Path, epochs: int) -> list[str]:
    return ["--threads", "1", "sft", "--base-model", str(base), "--train-data", str(data),
            "--out", str(out), "--epochs", str(epochs), "--batch-size", "4", "--eval-prompts",
            "0"]


@pytest.mark.slow  # a training child process
def test_child_streams_steps_as_progress_and_metrics(tmp_path, tiny_base):
    ctx, out = _ctx(tmp_path), tmp_path / "out"
    run_child(ctx, _argv(tiny_base, _data(tmp_path), out, epochs=2))
    progress, metrics, _ = ctx.report.take()
    assert progress == 1.0
    assert metrics and all("loss" in m or "val/loss" in m for _, m in metrics)
    assert any("val/loss" in m for _, m in metrics)  # renamed from val_loss
    assert (out / "manifest.json").is_file()


@pytest.mark.slow  # a training child process
def test_cancel_stops_child_at_a_step_and_leaves_no_directory(tmp_path, tiny_base):
    ctx, out = _ctx(tmp_path), tmp_path / "out"

    def cancel_after_first_step() -> None:
        while not ctx.report.metrics:
            threading.Event().wait(0.05)
        ctx.cancel.set()

    threading.Thread(target=cancel_after_first_step, daemon=True).start()
    with pytest.raises(JobCancelled):
        run_child(ctx, _argv(tiny_base, _data(tmp_path), out, epochs=1_000_000))
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.slow  # a training child process
def test_failing_child_raises_with_its_error_as_a_sentence(tmp_path):
    with pytest.raises(JobFailed, match=r"^The sft stage failed: \w*Error: ") as failed:
        run_child(_ctx(tmp_path), ["sft", "--base-model", str(tmp_path / "missing"),
                                   "--train-data", str(tmp_path / "none.jsonl"),
                                   "--out", str(tmp_path / "o")])
    assert "Traceback" not in str(failed.value) and "\n" not in str(failed.value)


def test_the_failure_sentence_is_the_error_not_the_traceback_around_it():
    tail = ["Traceback (most recent call last):", '  File "training/ppo.py", line 335, in x',
            "    raise ValueError(...)", "ValueError: ptx_coef > 0 needs pretrain_data", ""]
    assert failure_sentence("ppo", 1, tail) == (
        "The ppo stage failed: ValueError: ptx_coef > 0 needs pretrain_data (exit status 1; "
        "its output is in the job's log).")
    assert "error: argument --epochs" in failure_sentence(
        "sft", 2, ["usage: python -m training sft", "python -m training sft: error: argument "
                   "--epochs: invalid int value: 'x'"])
    assert "it printed nothing" in failure_sentence("rm", -9, [])


@pytest.mark.slow  # a child process
def test_bad_config_file_fails_the_stage_naming_it_and_the_field(tmp_path):
    path = contract.write_config({"epochs": "two"}, tmp_path / "sft.config.json")
    with pytest.raises(JobFailed, match=r"The sft stage failed: .*epochs must be int, not "
                       r"'two' \(exit status 2"):
        run_child(_ctx(tmp_path), ["--threads", "1", "sft", "--config", str(path)])


def test_trl_names_maps_short_keys():
    assert trl_names({"kl": 1.0, "rm_score": 2.0, "loss": 3.0}) == {
        "objective/kl": 1.0, "objective/scores": 2.0, "loss": 3.0}


@pytest.mark.slow
def test_several_processes_start_as_one_group_on_cpu(tmp_path):
    script = tmp_path / "ranks.py"
    # Each process writes a file of its own (two processes printing at once interleave).
    script.write_text("import pathlib\nfrom accelerate import PartialState\n"
                      "s = PartialState(cpu=True)\n"
                      f"pathlib.Path({str(tmp_path)!r}, f'rank{{s.process_index}}').write_text("
                      "f'{s.process_index} of {s.num_processes}')\n")
    argv = command(["x"], processes=2)
    assert argv[argv.index("-m", 1) + 1 :][:2] == ["accelerate.commands.launch", "--multi_gpu"]
    launch = argv[: argv.index("training") - 1] + [str(script)]  # the launcher, our script
    proc = subprocess.run(launch, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [(tmp_path / f"rank{i}").read_text() for i in (0, 1)] == ["0 of 2", "1 of 2"]


def test_every_child_gets_the_configured_torch_threads(monkeypatch):
    # Not only the round's stages: the tiny base model's pretraining and sampling as well.
    from app.config import get_settings

    monkeypatch.setenv("RLHF_TRAIN_THREADS", "1")
    get_settings.cache_clear()
    try:
        for argv in (["tiny", "--out", "x"], ["sample", "--model", "m"], ["sft", "--config", "c"]):
            line = command(argv)
            assert line[line.index("training") + 1:] == ["--events", "--threads", "1", *argv]
        assert command(["--threads", "2", "tiny"]).count("--threads") == 1  # asked: kept
        launched = command(["tiny"], processes=2)
        assert launched[-3:] == ["--threads", "1", "tiny"]
        monkeypatch.setenv("RLHF_TRAIN_THREADS", "0")
        get_settings.cache_clear()
        assert "--threads" not in command(["tiny"])
    finally:
        monkeypatch.undo()  # the environment back first, then the settings read from it
        get_settings.cache_clear()
