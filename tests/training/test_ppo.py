"""PPO / PPO-ptx against a toy reward: reward rises, β bounds KL, γ pays the alignment tax."""

import json

import pytest
import torch

from training.outputs import read_manifest
from training.ppo import PPOConfig, train_ppo
from training.records import PromptRecord, write_jsonl
from training.tiny import synthetic_corpus

pytestmark = pytest.mark.slow  # trains models: minutes on a small CPU

STEPS = 12


def toy_reward(prompts, responses):
    """Likes the letter e: easy for PPO to find, far from plain language modelling."""
    return torch.tensor([r.count("e") / 4.0 for r in responses])


@pytest.fixture(scope="module")
def ppo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo")
    words = "red big old new calm quiet happy small".split()
    write_jsonl(
        root / "prompts.jsonl",
        [PromptRecord(prompt_id=i, text=f"the {w} cat") for i, w in enumerate(words * 4)],
    )
    (root / "pretrain.txt").write_text("\n\n".join(synthetic_corpus(160, seed=9)))
    return root


def run(tiny_dir, root, name, seed=0, **overrides):
    """Train briefly and return (per-step metrics, manifest)."""
    cfg = PPOConfig(
        policy_model=str(tiny_dir),
        reward_model=None,
        prompts=str(root / "prompts.jsonl"),
        out=str(root / name),
        pretrain_data=str(root / "pretrain.txt"),
        kl_coef=0.02,
        ptx_coef=0.0,
        steps=STEPS,
        rollout_size=16,
        minibatch_size=8,
        ppo_epochs=2,
        lr=1e-3,
        value_lr=1e-3,
        max_new_tokens=16,
        ptx_batch_size=8,
        ptx_max_len=64,
        heldout_texts=16,
        seed=seed,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    out = train_ppo(cfg, reward=toy_reward)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows, read_manifest(out)


def tail(rows, key, n=4):
    return sum(r[key] for r in rows[-n:]) / n


@pytest.fixture(scope="module")
def plain_ppo(tiny_dir, ppo_data):
    return run(tiny_dir, ppo_data, "ppo")


def test_ppo_raises_reward_with_bounded_kl(plain_ppo):
    rows, manifest = plain_ppo
    assert len(rows) == STEPS
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # first rollout: policy == reference
    assert tail(rows, "rm_score") > rows[0]["rm_score"] + 0.4
    assert max(r["kl"] for r in rows) < 48.0  # < 3 nats per token over ≤ 16 tokens
    for key in ("entropy", "response_len", "value_loss", "clip_frac", "heldout_lm_loss"):
        assert key in rows[-1]
    assert manifest["kind"] == "policy" and manifest["metrics"]["episodes"] == STEPS * 16


def test_larger_beta_gives_smaller_kl(tiny_dir, ppo_data, plain_ppo):
    rows, _ = plain_ppo
    strict, _ = run(tiny_dir, ppo_data, "ppo_strict", kl_coef=1.0)
    assert tail(strict, "kl") < 0.5 * tail(rows, "kl")


def test_ptx_term_reduces_the_alignment_tax(tiny_dir, ppo_data, plain_ppo):
    rows, manifest = plain_ppo
    ptx_rows, ptx_manifest = run(tiny_dir, ppo_data, "ppo_ptx", ptx_coef=1.0)
    tax_plain = rows[-1]["heldout_lm_loss"] - manifest["metrics"]["initial_heldout_lm_loss"]
    tax_ptx = ptx_rows[-1]["heldout_lm_loss"] - ptx_manifest["metrics"]["initial_heldout_lm_loss"]
    assert tax_plain > 0.1  # plain PPO forgets some language modelling
    assert tax_ptx < tax_plain - 0.1
    assert "ptx_loss" in ptx_rows[-1] and "ptx_loss" not in rows[-1]


def test_adaptive_kl_moves_beta(tiny_dir, ppo_data):
    rows, _ = run(
        tiny_dir, ppo_data, "ppo_adaptive", adaptive_kl=True, kl_target=1.0, kl_horizon=50, steps=4
    )
    assert rows[-1]["beta"] > rows[0]["beta"]  # KL above target: β grows
