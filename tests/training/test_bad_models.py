"""A base model that cannot serve: a clear error from the stage, and nothing written."""

import json

import pytest
from transformers import T5Config

from training.contract import PPOConfig, RewardConfig, SFTConfig, SmallLlamaConfig
from training.ppo import train_ppo
from training.records import PromptRecord, SFTRecord, write_jsonl
from training.reward import train_reward_model
from training.sft import train_sft
from training.small_llama import build_small_llama
from training.tiny import synthetic_rankings


@pytest.fixture
def inputs(tmp_path):
    """Exported-like inputs in `data/`, and an empty `models/` for the stage to write to."""
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "sft.jsonl", [SFTRecord(prompt=f"p{i}", completion="it is kind.")
                                     for i in range(4)])
    write_jsonl(data / "rank.jsonl", synthetic_rankings(4, 4, seed=0))
    write_jsonl(data / "prompts.jsonl", [PromptRecord(prompt_id=0, text="the cat")])
    (tmp_path / "models").mkdir()
    return tmp_path


def run_every_stage(base, root):
    """Each stage on `base`; the errors they raise, by stage."""
    out, data = root / "models", root / "data"
    stages = {
        "sft": lambda: train_sft(SFTConfig(base_model=str(base), out=str(out / "sft"),
                                           train_data=str(data / "sft.jsonl"), tracker="none")),
        "rm": lambda: train_reward_model(RewardConfig(
            base_model=str(base), out=str(out / "rm"), train_data=str(data / "rank.jsonl"),
            tracker="none")),
        "ppo": lambda: train_ppo(PPOConfig(
            policy_model=str(base), reward_model=str(base), out=str(out / "policy"),
            prompts=str(data / "prompts.jsonl"), ptx_coef=0.0, tracker="none")),
    }
    errors = {}
    for name, run in stages.items():
        with pytest.raises(ValueError) as info:
            run()
        errors[name] = str(info.value)
    assert list((root / "models").iterdir()) == []  # nothing half-written, no side files
    return errors


def test_stages_refuse_a_model_that_is_not_a_causal_lm(inputs):
    t5 = inputs / "t5"
    T5Config(d_model=8, d_ff=8, num_layers=1, num_heads=1, d_kv=4).save_pretrained(t5)
    for error in run_every_stage(t5, inputs).values():
        assert "is a 't5' model, not a causal language model" in error


def test_stages_refuse_a_directory_that_is_no_model(inputs):
    for error in run_every_stage(inputs / "data", inputs).values():
        assert "is not a model directory or id" in error


def test_stages_refuse_a_tokenizer_without_eos(inputs):
    base = build_small_llama(inputs / "base", SmallLlamaConfig(
        pad_token=False, pretrain_steps=0, vocab_size=300, hidden_size=16, n_layer=1))
    config = json.loads((base / "tokenizer_config.json").read_text())
    (base / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": None}))
    for error in run_every_stage(base, inputs).values():
        assert "has no eos token" in error
