"""DPO: K-way on rankings, starts at log 2, moves the policy toward the preferred answers."""

import json
import math

import pytest
import torch

from training.__main__ import main
from training.dpo import DPOCollator, implicit_rewards
from training.models import load_policy, load_tokenizer
from training.records import GroupedRecord, write_jsonl
from training.tiny import synthetic_rankings


def test_dpo_cli_trains_on_rankings_from_log2(tiny_dir, tmp_path):
    write_jsonl(tmp_path / "rank.jsonl", synthetic_rankings(16, 4, seed=5))
    assert (
        main(
            [
                "--threads",
                "1",
                "dpo",
                "--policy-model",
                str(tiny_dir),
                "--train-data",
                str(tmp_path / "rank.jsonl"),
                "--out",
                str(tmp_path / "dpo"),
                "--epochs",
                "3",
                "--prompts-per-step",
                "4",
                "--lr",
                "3e-3",
                "--max-len",
                "64",
                "--valid-fraction",
                "0.25",
                "--tracker",
                "none",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r and "val_loss" not in r]
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference
    assert min(r["loss"] for r in steps[-3:]) < math.log(2) - 0.05
    manifest = json.loads((tmp_path / "dpo" / "manifest.json").read_text())
    assert manifest["kind"] == "policy" and manifest["method"] == "dpo"


def test_implicit_rewards_take_one_row_per_response(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    policy = load_policy(tiny_dir, tok, 0.0).eval()
    record = GroupedRecord("p", ["a", "bb", "ccc"], [[2], [0, 1]])
    batch = DPOCollator(tok, 64)([record])
    assert batch["input_ids"].shape[0] == 3
    rewards = implicit_rewards(policy, policy, batch, beta=0.1)
    torch.testing.assert_close(rewards, torch.zeros(3))


def test_with_lora_the_reference_is_the_adapter_less_policy(tiny_dir):
    from training.dpo import DPOConfig
    from training.models import prepare_model

    tok = load_tokenizer(tiny_dir)
    cfg = DPOConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0)
    policy = prepare_model(load_policy(tiny_dir, tok, 0.0), cfg, "CAUSAL_LM").eval()
    batch = DPOCollator(tok, 64)([GroupedRecord("p", ["a", "bb"], [[0], [1]])])
    torch.testing.assert_close(implicit_rewards(policy, None, batch, 0.1), torch.zeros(2))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    assert implicit_rewards(policy, None, batch, 0.1).abs().min() > 1e-4
