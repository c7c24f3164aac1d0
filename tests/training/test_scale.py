"""What a researcher on a real model needs: LoRA end to end, accumulation, resume, trackers."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from training.models import load_policy, load_tokenizer
from training.ppo import PPOConfig, train_ppo
from training.records import PromptRecord, SFTRecord, write_jsonl
from training.reward import RewardConfig, train_reward_model
from training.sft import SFTConfig, train_sft
from training.tiny import synthetic_corpus, synthetic_rankings

LORA = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "tracker": "none"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    corpus = synthetic_corpus(16, seed=1)
    write_jsonl(
        root / "sft.jsonl",
        [SFTRecord(prompt=f"p{i}", completion=t[:30], prompt_id=i) for i, t in enumerate(corpus)],
    )
    write_jsonl(root / "rank.jsonl", synthetic_rankings(12, 4, seed=2))
    write_jsonl(
        root / "prompts.jsonl", [PromptRecord(prompt_id=i, text=f"the cat {i}") for i in range(4)]
    )
    (root / "pre.txt").write_text("\n\n".join(synthetic_corpus(24, seed=3)))
    return root


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_lora_sft_rm_ppo_end_to_end_on_the_tiny_model(tiny_dir, data, tmp_path):
    sft = train_sft(
        SFTConfig(
            base_model=str(tiny_dir),
            train_data=str(data / "sft.jsonl"),
            out=str(tmp_path / "sft"),
            epochs=1,
            batch_size=4,
            lr=1e-2,
            max_len=64,
            select_by="last",
            grad_accum=2,
            gradient_checkpointing=True,
            **LORA,
        )
    )
    rm = train_reward_model(
        RewardConfig(
            base_model=str(sft),
            train_data=str(data / "rank.jsonl"),
            out=str(tmp_path / "rm"),
            prompts_per_step=4,
            lr=1e-2,
            max_len=64,
            grad_accum=2,
            **LORA,
        )
    )
    policy = train_ppo(
        PPOConfig(
            policy_model=str(sft),
            reward_model=str(rm),
            prompts=str(data / "prompts.jsonl"),
            out=str(tmp_path / "policy"),
            pretrain_data=str(data / "pre.txt"),
            ptx_coef=27.8,
            steps=2,
            rollout_size=4,
            minibatch_size=4,
            ppo_epochs=1,
            lr=1e-2,
            value_lr=1e-2,
            max_new_tokens=8,
            heldout_texts=4,
            ptx_batch_size=4,
            ptx_max_len=48,
            grad_accum=2,
            **LORA,
        )
    )
    base_size = n_params(load_policy(tiny_dir, load_tokenizer(tiny_dir)))
    for out, kind in [(sft, "sft"), (rm, "rm"), (policy, "policy")]:
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["kind"] == kind
        assert 0 < manifest["metrics"]["trainable_params"] < 0.2 * base_size  # adapters only
        assert not (out / "adapter_config.json").exists()  # merged: a plain directory
    # the saved directories are plain transformers models, changed by the adapters
    tuned = AutoModelForCausalLM.from_pretrained(sft)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert n_params(tuned) == base_size
    assert any(
        not torch.equal(a, b)
        for a, b in zip(tuned.state_dict().values(), base.state_dict().values(), strict=True)
    )
    AutoModelForSequenceClassification.from_pretrained(rm, num_labels=1)
    rows = [json.loads(x) for x in (policy / "metrics.jsonl").read_text().splitlines()]
    # the reference is the adapter-less policy: identical to it before the first update
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4)
    assert rows[-1]["kl"] != pytest.approx(0.0, abs=1e-6)


def test_gradient_accumulation_gives_the_same_step(tiny_dir, data, tmp_path):
    def sft(name, accum):
        out = train_sft(
            SFTConfig(
                base_model=str(tiny_dir),
                train_data=str(data / "sft.jsonl"),
                out=str(tmp_path / name),
                epochs=1,
                batch_size=8,
                lr=1e-3,
                max_len=64,
                dropout=0.0,
                select_by="last",
                grad_accum=accum,
                tracker="none",
            )
        )
        losses = [
            json.loads(x).get("loss", 0.0) for x in (out / "metrics.jsonl").read_text().splitlines()
        ]
        return AutoModelForCausalLM.from_pretrained(out).state_dict(), losses

    (one, one_losses), (four, four_losses) = sft("one", 1), sft("four", 4)
    assert one_losses == pytest.approx(four_losses, rel=1e-5)
    for k in one:  # Adam magnifies float-order noise on near-zero gradients: ~5 % of a step
        torch.testing.assert_close(one[k], four[k], rtol=1e-3, atol=1e-4)


class Crash(Exception):
    pass


def test_sft_resumes_from_its_last_checkpoint_to_the_same_model(tiny_dir, data, tmp_path):
    def cfg(out, resume=False):
        return SFTConfig(
            base_model=str(tiny_dir),
            train_data=str(data / "sft.jsonl"),
            out=str(tmp_path / out),
            epochs=2,
            batch_size=4,
            lr=1e-3,
            max_len=64,
            valid_fraction=0.25,
            select_by="last",
            checkpoint_every=2,
            resume=resume,
            tracker="none",
        )

    whole = train_sft(cfg("whole"))

    def crash_at_5(step, total, metrics):
        if step == 5 and "loss" in metrics:
            raise Crash

    with pytest.raises(Crash):
        train_sft(cfg("again"), callback=crash_at_5)
    assert (tmp_path / ".again.checkpoints").exists()
    assert not (tmp_path / "again").exists()
    steps = []
    resumed = train_sft(cfg("again", resume=True), callback=lambda s, t, m: steps.append(s))
    assert steps[0] == 5  # steps 1-4 came from the checkpoint
    assert not (tmp_path / ".again.checkpoints").exists()
    a = AutoModelForCausalLM.from_pretrained(whole).state_dict()
    b = AutoModelForCausalLM.from_pretrained(resumed).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    rows = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    whole_rows = [json.loads(x) for x in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [r["step"] for r in whole_rows]


def test_ppo_resumes_from_its_last_checkpoint(tiny_dir, data, tmp_path):
    def cfg(resume=False):
        return PPOConfig(
            policy_model=str(tiny_dir),
            reward_model=None,
            prompts=str(data / "prompts.jsonl"),
            out=str(tmp_path / "policy"),
            ptx_coef=0.0,
            steps=4,
            rollout_size=2,
            minibatch_size=2,
            ppo_epochs=1,
            max_new_tokens=6,
            checkpoint_every=2,
            resume=resume,
            tracker="none",
        )

    def reward(prompts, responses):
        return torch.tensor([r.count("e") / 4.0 for r in responses])

    def crash_at_3(step, total, metrics):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train_ppo(cfg(), callback=crash_at_3, reward=reward)
    steps = []
    out = train_ppo(cfg(resume=True), callback=lambda s, t, m: steps.append(s), reward=reward)
    assert steps == [3, 4]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["episodes"] == 4 * 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4


def test_tensorboard_logs_land_beside_metrics(tiny_dir, data, tmp_path):
    pytest.importorskip("tensorboard")
    out = train_reward_model(
        RewardConfig(
            base_model=str(tiny_dir),
            train_data=str(data / "rank.jsonl"),
            out=str(tmp_path / "rm"),
            prompts_per_step=6,
            max_len=64,
            tracker="tensorboard",
        )
    )
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert (out / "metrics.jsonl").exists()
    assert not list(tmp_path.glob(".rm.*"))
