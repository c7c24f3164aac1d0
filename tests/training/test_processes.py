"""Two processes per stage (DDP over gloo on CPU) compute what one process computes.

SFT and RM are run once as one process with a global batch of 4 and once under
`accelerate launch --multi_gpu --num_processes 2` with 2 per process, on the same data;
every logged step's loss and the held-out loss agree to TOLERANCE. PPO only has to run.
What needs a GPU (NCCL, FSDP/DeepSpeed configs, bf16) is not exercised here.
"""

import json
import os
import subprocess
import sys

import pytest

from training.records import PromptRecord, SFTRecord, write_jsonl
from training.tiny import synthetic_corpus, synthetic_rankings

pytestmark = pytest.mark.slow  # starts torch.distributed process groups

# float32 sums in another order (gradients averaged by all-reduce), nothing more
TOLERANCE = 1e-4


def launch(args, processes):
    """`python -m training ARGS` as one process, or under accelerate with several."""
    if processes == 1:
        cmd = [sys.executable, "-m", "training", "--threads", "1", *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(processes), "-m", "training", "--threads", "1", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(model_dir):
    """(training loss of every step, held-out loss) from a model directory's metrics."""
    rows = [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], [r["val_loss"] for r in rows
                                                      if "val_loss" in r]


@pytest.fixture
def data(tmp_path):
    """16 training records of each kind (4 global batches of 4) and separate held-out ones."""
    demos = [SFTRecord(prompt=f"describe the cat {i}.", completion=t[:40])
             for i, t in enumerate(synthetic_corpus(20, seed=1))]
    write_jsonl(tmp_path / "sft.jsonl", demos[:16])
    write_jsonl(tmp_path / "sft_valid.jsonl", demos[16:])
    ranks = synthetic_rankings(20, 4, seed=2)
    write_jsonl(tmp_path / "rank.jsonl", ranks[:16])
    write_jsonl(tmp_path / "rank_valid.jsonl", ranks[16:])
    write_jsonl(tmp_path / "prompts.jsonl",
                [PromptRecord(prompt_id=i, text=f"the cat {i}") for i in range(4)])
    return tmp_path


def test_two_processes_reach_the_loss_of_one_on_the_same_global_batch(small_llama_dir, data):
    for n in (1, 2):
        per_process = str(4 // n)
        launch(["sft", "--base-model", str(small_llama_dir), "--train-data",
                str(data / "sft.jsonl"), "--valid-data", str(data / "sft_valid.jsonl"),
                "--out", str(data / f"sft{n}"), "--batch-size", per_process,
                "--max-len", "64", "--epochs", "2", "--tracker", "none"], n)
        launch(["rm", "--base-model", str(small_llama_dir), "--train-data",
                str(data / "rank.jsonl"), "--valid-data", str(data / "rank_valid.jsonl"),
                "--out", str(data / f"rm{n}"), "--prompts-per-step", per_process,
                "--max-len", "64", "--epochs", "2", "--tracker", "none"], n)
    for stage in ("sft", "rm"):
        (one, one_val), (two, two_val) = losses(data / f"{stage}1"), losses(data / f"{stage}2")
        assert len(one) == len(two) == 8, stage  # 2 epochs of 4 steps
        pairs = zip(one + one_val, two + two_val, strict=True)
        assert max(abs(a - b) for a, b in pairs) < TOLERANCE, stage
    sft1 = json.loads((data / "sft1" / "manifest.json").read_text())["metrics"]
    sft2 = json.loads((data / "sft2" / "manifest.json").read_text())["metrics"]
    assert sft1["train_tokens"] == sft2["train_tokens"]  # both processes' tokens counted

    proc = launch(["ppo", "--policy-model", str(data / "sft2"), "--reward-model",
                   str(data / "rm2"), "--prompts", str(data / "prompts.jsonl"), "--out",
                   str(data / "policy"), "--steps", "2", "--rollout-size", "4",
                   "--minibatch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "8",
                   "--ptx-coef", "0", "--tracker", "none"], 2)
    assert "2 processes" in proc.stdout + proc.stderr
    assert json.loads((data / "policy" / "manifest.json").read_text())["kind"] == "policy"
