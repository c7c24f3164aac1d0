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
    assert min(r["kl"] for r in rows) >= 0.0  # an estimator that cannot go negative
    for key in ("entropy", "response_len", "value_loss", "clip_frac", "heldout_lm_loss"):
        assert key in rows[-1]
    assert manifest["kind"] == "policy" and manifest["metrics"]["episodes"] == STEPS * 16


def test_larger_beta_gives_smaller_kl(tiny_dir, ppo_data, plain_ppo):
    rows, _ = plain_ppo
    strict, _ = run(tiny_dir, ppo_data, "ppo_strict", kl_coef=1.0)
    assert tail(strict, "kl") < 0.5 * tail(rows, "kl")


def test_ptx_keeps_the_rl_signal_and_reduces_the_tax(tiny_dir, ppo_data, plain_ppo):
    # γ = 2.78, a tenth of the paper's: on the tiny model, whose BPE tokens are whole words
    # of a language it was pretrained on, the paper's 27.8 holds the policy at its base
    # within these few steps (measured: an RM-score gain of 0.19 against 2.41 without ptx).
    rows, manifest = plain_ppo
    ptx_rows, ptx_manifest = run(tiny_dir, ppo_data, "ppo_ptx", ptx_coef=2.78)
    tax_plain = rows[-1]["heldout_lm_loss"] - manifest["metrics"]["initial_heldout_lm_loss"]
    tax_ptx = ptx_rows[-1]["heldout_lm_loss"] - ptx_manifest["metrics"]["initial_heldout_lm_loss"]
    assert tax_plain > 0.1  # plain PPO forgets some language modelling
    assert tax_ptx < tax_plain - 0.1
    assert "ptx_loss" in ptx_rows[-1] and "ptx_loss" not in rows[-1]
    # γ weighs a pretraining token against a whole episode: the reward still rises (as
    # token means, γ × the LM loss drowned the policy gradient)
    gain_plain = tail(rows, "rm_score") - rows[0]["rm_score"]
    assert tail(ptx_rows, "rm_score") - ptx_rows[0]["rm_score"] > 0.5 * gain_plain


def test_adaptive_kl_moves_beta(tiny_dir, ppo_data):
    rows, _ = run(
        tiny_dir, ppo_data, "ppo_adaptive", adaptive_kl=True, kl_target=1.0, kl_horizon=50, steps=4
    )
    assert rows[-1]["beta"] > rows[0]["beta"]  # KL above target: β grows


def test_logprobs_use_the_sampling_temperature(tiny_dir):
    from training.models import load_policy, load_tokenizer
    from training.ppo import forward_logits, response_logprobs, rollout

    tok = load_tokenizer(tiny_dir)
    tok.padding_side = "left"
    policy = load_policy(tiny_dir, tok, dropout=0.0).eval()
    from training.models import load_reward_model

    value = load_reward_model(tiny_dir, tok, dropout=0.0).eval()
    cfg = PPOConfig(temperature=0.5, max_new_tokens=6)
    torch.manual_seed(0)
    ro = rollout(policy, policy, value, tok, toy_reward, ["the cat", "a dog"], cfg, 0.02)
    n = ro["n_prompt"]
    logits = forward_logits(policy, ro["seq"], ro["mask"])[:, n - 1 : -1]
    expected = torch.log_softmax(logits / 0.5, -1).gather(-1, ro["seq"][:, n:, None])[..., 0]
    torch.testing.assert_close(ro["logprobs"], expected, rtol=1e-5, atol=1e-5)
    hot, _ = response_logprobs(policy, ro["seq"], ro["mask"], n)  # T = 1 differs
    assert (hot - expected).abs().max() > 1e-2


def test_missing_eos_penalty_lowers_the_score_of_unfinished_answers(tiny_dir):
    from training.models import load_policy, load_reward_model, load_tokenizer
    from training.ppo import rollout

    tok = load_tokenizer(tiny_dir)
    tok.padding_side = "left"
    policy = load_policy(tiny_dir, tok, dropout=0.0).eval()
    value = load_reward_model(tiny_dir, tok, dropout=0.0).eval()
    zero = lambda prompts, responses: torch.zeros(len(responses))  # noqa: E731
    cfg = PPOConfig(max_new_tokens=3, missing_eos_penalty=1.5)  # 3 tokens: rarely finished
    torch.manual_seed(0)
    ro = rollout(policy, policy, value, tok, zero, ["the cat"] * 8, cfg, 0.02)
    ended = ((ro["seq"][:, ro["n_prompt"] :] == tok.eos_token_id) & ro["rmask"].bool()).any(1)
    assert (~ended).any()
    torch.testing.assert_close(ro["scores"], torch.where(ended, 0.0, -1.5))
    assert ro["no_eos"].item() == pytest.approx((~ended).float().mean().item())


def test_ppo_uses_train_prompts_and_keeps_the_best_evaluated_step(tiny_dir, tmp_path):
    rows = [PromptRecord(prompt_id=i, text=f"train {i}", split="train") for i in range(8)]
    rows += [PromptRecord(prompt_id=10 + i, text=f"valid {i}", split="valid") for i in range(4)]
    rows += [PromptRecord(prompt_id=20 + i, text=f"test {i}", split="test") for i in range(4)]
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    seen = []

    def reward(prompts, responses):
        seen.extend(prompts)
        return toy_reward(prompts, responses)

    cfg = PPOConfig(
        policy_model=str(tiny_dir),
        reward_model=None,
        prompts=str(tmp_path / "prompts.jsonl"),
        out=str(tmp_path / "policy"),
        ptx_coef=0.0,
        steps=4,
        rollout_size=8,
        minibatch_size=8,
        ppo_epochs=1,
        lr=1e-3,
        value_lr=1e-3,
        max_new_tokens=8,
        eval_every=2,
        tracker="none",
    )
    out = train_ppo(cfg, reward=reward)
    # valid: the evaluations only; test: at the very end, once for the kept policy and
    # once for SFT (what the watch compares it with)
    assert [p.split()[0] for p in seen][-8:] == ["test"] * 8
    assert sum(p.startswith("test") for p in seen) == 8
    assert sum(p.startswith("train") for p in seen) == 4 * 8
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "eval_objective" in r]
    assert [r["step"] for r in evaluated] == [2, 4]
    manifest = read_manifest(out)
    best = max(evaluated, key=lambda r: r["eval_objective"])
    assert manifest["metrics"]["selected_step"] == best["step"]
    assert manifest["metrics"]["selected_by"] == "objective"
    assert manifest["metrics"]["eval_objective"] == best["eval_objective"]
    assert manifest["metrics"]["test_prompts"] == 4
    assert {"test_rm_score", "test_kl", "test_objective"} <= set(manifest["metrics"])
    signals = ("mean_length", "at_limit_share", "no_eos_share", "repeated_ngram_share",
               "distinct_2")
    for key in signals:
        assert 0 <= manifest["metrics"][f"test_{key}"] <= (8 if key == "mean_length" else 1)
        assert f"sft_test_{key}" in manifest["metrics"]
    assert "sft_test_rm_score" in manifest["metrics"]


def test_throughput_excludes_evaluation_time(tiny_dir, ppo_data, monkeypatch):
    import time

    from training import ppo

    offset = [0.0]
    monkeypatch.setattr(ppo, "clock", lambda: time.perf_counter() + offset[0])
    real_eval = ppo.heldout_lm_loss

    def slow_eval(*args, **kwargs):
        offset[0] += 1000.0  # an evaluation that takes 1000 s on this clock
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(ppo, "heldout_lm_loss", slow_eval)
    rows, manifest = run(tiny_dir, ppo_data, "ppo_timed", steps=2, eval_every=1)
    assert rows[-1]["gen_time_share"] > 0.01  # with the evaluations counted: < 1e-4
    assert rows[-1]["episodes_per_s"] > 32 / 1000
    assert manifest["metrics"]["train_seconds"] < 1000
