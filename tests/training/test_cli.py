"""The command line: every stage end to end on the tiny model, and under accelerate launch."""

import json
import os
import subprocess
import sys

import pytest

from training.__main__ import main
from training.records import PromptRecord, SFTRecord, write_jsonl
from training.tiny import synthetic_corpus, synthetic_rankings

pytestmark = pytest.mark.slow  # trains models: minutes on a small CPU


def test_cli_runs_every_stage_and_writes_candidate_import(tiny_dir, tmp_path):
    write_jsonl(
        tmp_path / "sft.jsonl",
        [
            SFTRecord(prompt=f"p{i}", completion=t[:30])
            for i, t in enumerate(synthetic_corpus(12, seed=1))
        ],
    )
    write_jsonl(tmp_path / "rank.jsonl", synthetic_rankings(8, 4, seed=2))
    write_jsonl(
        tmp_path / "prompts.jsonl",
        [PromptRecord(prompt_id=i, text=f"the cat {i}") for i in range(3)],
    )
    (tmp_path / "pre.txt").write_text("\n\n".join(synthetic_corpus(12, seed=3)))
    common = ["--threads", "1"]
    assert (
        main(
            [
                *common,
                "sft",
                "--base-model",
                str(tiny_dir),
                "--train-data",
                str(tmp_path / "sft.jsonl"),
                "--out",
                str(tmp_path / "sft"),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--max-len",
                "64",
                "--select-by",
                "val_loss",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *common,
                "rm",
                "--base-model",
                str(tmp_path / "sft"),
                "--train-data",
                str(tmp_path / "rank.jsonl"),
                "--out",
                str(tmp_path / "rm"),
                "--prompts-per-step",
                "4",
                "--max-len",
                "64",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *common,
                "ppo",
                "--policy-model",
                str(tmp_path / "sft"),
                "--reward-model",
                str(tmp_path / "rm"),
                "--prompts",
                str(tmp_path / "prompts.jsonl"),
                "--out",
                str(tmp_path / "policy"),
                "--pretrain-data",
                str(tmp_path / "pre.txt"),
                "--steps",
                "2",
                "--rollout-size",
                "3",
                "--minibatch-size",
                "3",
                "--ppo-epochs",
                "1",
                "--max-new-tokens",
                "8",
                "--heldout-texts",
                "4",
                "--ptx-batch-size",
                "2",
                "--ptx-max-len",
                "48",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *common,
                "sample",
                "--model",
                str(tmp_path / "policy"),
                "--prompts",
                str(tmp_path / "prompts.jsonl"),
                "--out",
                str(tmp_path / "cands.jsonl"),
                "--k",
                "4",
                "--max-new-tokens",
                "8",
                "--model-name",
                "policy-v1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *common,
                "bon",
                "--model",
                str(tmp_path / "policy"),
                "--prompts",
                str(tmp_path / "prompts.jsonl"),
                "--out",
                str(tmp_path / "bon.jsonl"),
                "--reward-model",
                str(tmp_path / "rm"),
                "--n",
                "3",
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )

    for name, kind, parent in [
        ("sft", "sft", tiny_dir),
        ("rm", "rm", tmp_path / "sft"),
        ("policy", "policy", tmp_path / "sft"),
    ]:
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["kind"] == kind and manifest["parent_model"] == str(parent)
        assert len(manifest["data_sha256"]) == 64
        assert (tmp_path / name / "metrics.jsonl").read_text().strip()
    rows = [json.loads(x) for x in (tmp_path / "cands.jsonl").read_text().splitlines()]
    assert [r["prompt_id"] for r in rows] == [0, 1, 2]
    assert all(len(r["candidates"]) == 4 for r in rows)
    assert rows[0]["candidates"][0]["model"] == "policy-v1"
    assert set(rows[0]["candidates"][0]) == {"text", "model"}
    bon = [json.loads(x) for x in (tmp_path / "bon.jsonl").read_text().splitlines()]
    assert [len(r["candidates"]) for r in bon] == [1, 1, 1]


def test_accelerate_launch_runs_reward_model_on_one_cpu_process(tiny_dir, tmp_path):
    write_jsonl(tmp_path / "rank.jsonl", synthetic_rankings(8, 4, seed=4))
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--cpu",
        "-m",
        "training",
        "--threads",
        "1",
        "rm",
        "--base-model",
        str(tiny_dir),
        "--train-data",
        str(tmp_path / "rank.jsonl"),
        "--out",
        str(tmp_path / "rm"),
        "--prompts-per-step",
        "4",
        "--max-len",
        "64",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "rm" / "manifest.json").read_text())
    assert manifest["kind"] == "rm"
    assert abs(manifest["metrics"]["demo_mean_after"]) < 1e-4
