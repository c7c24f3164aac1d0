"""The watch on policies really trained: PPO against a judge that pays for length learns to
pad its answers to the cap, and the watch flags the round when people find it no better;
PPO against a judge that pays for finishing properly is left alone."""

import pytest
import torch

from app.loop import human
from app.loop.watch import round_flags
from tests.loop.factories import judged, make_round
from training.outputs import read_manifest
from training.ppo import PPOConfig, train_ppo
from training.records import PromptRecord, SFTRecord, write_jsonl
from training.sft import SFTConfig, train_sft

pytestmark = pytest.mark.slow  # trains the tiny model: about 15 s on one core

WORDS = "red big old new calm quiet happy small".split()


def pays_for_length(prompts, responses):  # type: ignore[no-untyped-def]
    return torch.tensor([len(r) / 20.0 for r in responses])


def pays_for_a_full_stop(prompts, responses):  # type: ignore[no-untyped-def]
    return torch.tensor([float(r.strip().endswith(".")) for r in responses])


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory, tiny_dir):  # type: ignore[no-untyped-def]
    """A tiny SFT model that answers in one word and stops, and prompts with a test split;
    from the session's tiny model (tests/tiny.py's TINY), which it only reads."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gaming")
    write_jsonl(root / "demos.jsonl",
                [SFTRecord(prompt=f"the {w} cat", completion=f"{w}.") for w in WORDS * 8])
    rows = [PromptRecord(prompt_id=i, text=f"the {w} cat", split="train")
            for i, w in enumerate(WORDS * 4)]
    rows += [PromptRecord(prompt_id=100 + i, text=f"a {w} dog", split="test")
             for i, w in enumerate(WORDS * 2)]
    write_jsonl(root / "prompts.jsonl", rows)
    sft = train_sft(SFTConfig(base_model=str(tiny_dir), train_data=str(root / "demos.jsonl"),
                              out=str(root / "sft"), valid_fraction=0.1, epochs=12, batch_size=8,
                              lr=2e-3, dropout=0.0, eval_max_new_tokens=16, tracker="none"))
    return root, sft


def _policy_metrics(sft_dir, name, reward, **gentle):  # type: ignore[no-untyped-def]
    root, sft = sft_dir
    cfg = PPOConfig(policy_model=str(sft), reward_model=None, prompts=str(root / "prompts.jsonl"),
                    out=str(root / name), ptx_coef=0.0, steps=12, rollout_size=16,
                    minibatch_size=8, ppo_epochs=2, lr=1e-3, value_lr=1e-3, max_new_tokens=24,
                    kl_coef=0.02, select_by="last", tracker="none")
    for key, value in gentle.items():
        setattr(cfg, key, value)
    return read_manifest(train_ppo(cfg, reward=reward))["metrics"]


@pytest.fixture(autouse=True)
def _fresh_caches():  # type: ignore[no-untyped-def]
    human.clear_cache()
    yield
    human.clear_cache()


def test_a_policy_that_games_a_length_paying_judge_is_flagged(db, sft_dir):
    metrics = _policy_metrics(sft_dir, "gamed", pays_for_length)
    assert metrics["test_mean_length"] > 2 * metrics["sft_test_mean_length"]  # it padded
    assert metrics["test_rm_score"] > metrics["sft_test_rm_score"] + 0.5  # and was paid
    rnd, v = make_round(db, metrics=metrics)
    judged(db, candidate=v["policy"], baseline=v["sft"], wins=15, losses=15)  # people: level
    flags = round_flags(db=db, round_id=rnd.id)
    assert {"rm_up_people_flat", "length_jump"} <= set(flags), flags


def test_a_policy_trained_on_a_fair_judge_is_not_flagged(db, sft_dir):
    # held near SFT (β 0.2, a smaller step): pushed hard, even this judge's policy collapses
    # onto a few words, and the watch rightly says so
    metrics = _policy_metrics(sft_dir, "sane", pays_for_a_full_stop, kl_coef=0.2, lr=3e-4)
    rnd, v = make_round(db, metrics=metrics)
    judged(db, candidate=v["policy"], baseline=v["sft"], wins=24, losses=6)  # people agree
    assert round_flags(db=db, round_id=rnd.id) == [], metrics
