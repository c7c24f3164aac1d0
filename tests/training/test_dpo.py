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
    torch.manual_seed(0)  # the adapters' random init: the same whatever ran before
    policy = prepare_model(load_policy(tiny_dir, tok, 0.0), cfg, "CAUSAL_LM").eval()
    batch = DPOCollator(tok, 64)([GroupedRecord("p", ["a", "bb"], [[0], [1]])])
    torch.testing.assert_close(implicit_rewards(policy, None, batch, 0.1), torch.zeros(2))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    assert implicit_rewards(policy, None, batch, 0.1).abs().min() > 1e-4


class Crash(Exception):
    pass


def _dpo(tiny_dir, data, out, **kw):  # type: ignore[no-untyped-def]
    from training.dpo import DPOConfig

    return DPOConfig(policy_model=str(tiny_dir), train_data=str(data), out=str(out), epochs=2,
                     prompts_per_step=4, lr=1e-3, max_len=64, valid_fraction=0.25,
                     tracker="none", **kw)


def _state(path):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def _losses(path):  # type: ignore[no-untyped-def]
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


@pytest.fixture
def rankings(tmp_path):  # type: ignore[no-untyped-def]
    write_jsonl(tmp_path / "rank.jsonl", synthetic_rankings(12, 4, seed=2))
    return tmp_path / "rank.jsonl"


def test_dpo_gradient_accumulation_gives_the_same_steps(tiny_dir, rankings, tmp_path,
                                                        monkeypatch):
    from training import dpo

    rows: list[int] = []  # the rows of each forward pass that trains (with gradients)
    real = dpo.sequence_logps

    def spy(model, batch):  # type: ignore[no-untyped-def]
        if torch.is_grad_enabled():
            rows.append(len(batch["input_ids"]))
        return real(model, batch)

    monkeypatch.setattr(dpo, "sequence_logps", spy)
    one = dpo.train_dpo(_dpo(tiny_dir, rankings, tmp_path / "one"))
    whole_rows, rows[:] = max(rows), []
    three = dpo.train_dpo(_dpo(tiny_dir, rankings, tmp_path / "three", grad_accum=3))
    assert whole_rows == 4 * 4 and max(rows) <= 2 * 4  # 4 prompts of K = 4, in 3 parts
    assert [s for s, _ in _losses(one)] == [s for s, _ in _losses(three)]
    assert [x for _, x in _losses(one)] == pytest.approx([x for _, x in _losses(three)],
                                                         rel=1e-4)
    a, b = _state(one), _state(three)
    for k in a:  # Adam magnifies float-order noise on near-zero gradients: < half a step
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=5e-4)


def test_dpo_resumes_from_its_last_checkpoint_to_the_same_model(tiny_dir, rankings, tmp_path):
    from training.dpo import train_dpo

    whole = train_dpo(_dpo(tiny_dir, rankings, tmp_path / "whole", checkpoint_every=2))

    def crash_at_4(step, total, metrics):  # type: ignore[no-untyped-def]
        if step == 4 and "loss" in metrics:
            raise Crash

    with pytest.raises(Crash):
        train_dpo(_dpo(tiny_dir, rankings, tmp_path / "again", checkpoint_every=2),
                  callback=crash_at_4)
    assert (tmp_path / ".again.checkpoints").exists() and not (tmp_path / "again").exists()
    steps: list[int] = []
    resumed = train_dpo(_dpo(tiny_dir, rankings, tmp_path / "again", checkpoint_every=2,
                             resume=True), callback=lambda s, t, m: steps.append(s))
    assert steps[0] == 3  # steps 1-2 came from the checkpoint at step 2
    assert not (tmp_path / ".again.checkpoints").exists()
    assert [s for s, _ in _losses(resumed)] == [s for s, _ in _losses(whole)]
    assert [x for _, x in _losses(resumed)] == pytest.approx([x for _, x in _losses(whole)])
    a, b = _state(whole), _state(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
