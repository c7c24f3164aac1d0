"""Reward model: K-way batches equal the expanded pairs, and the saved RM is centred on demos."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from training.data import RankingCollator, encode_pair, pad
from training.models import (
    fold_score_offset,
    load_reward_model,
    load_tokenizer,
    rm_scores,
    set_score_pooling,
    token_scores,
)
from training.outputs import sha256_file
from training.records import GroupedRecord, SFTRecord, comparisons_from_groups, write_jsonl
from training.reward import RewardConfig, kway_loss, mean_score, train_reward_model
from training.tiny import synthetic_rankings

RECORDS = [
    GroupedRecord(
        "pick one", ["alpha", "beta gamma", "delta", "epsilon zeta eta"], [[2], [0], [3], [1]]
    ),
    GroupedRecord(
        "another prompt", ["one", "two", "three", "four", "five"], [[4], [1, 3], [0], [2]]
    ),  # a tie: (1, 3) gives no pair
]


class RowCounter:
    """Counts sequences (batch rows) through the transformer body."""

    def __init__(self, model):
        self.rows = 0
        model.base_model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        ids = args[0] if args else kwargs["input_ids"]
        self.rows += ids.shape[0]


def expanded_pairs_loss(model, tok, records, max_len=128):
    """The baseline: every comparison is its own example with two forward passes."""
    per_prompt = []
    for r in records:
        losses = []
        for w, lo in comparisons_from_groups(r.ranking):
            ids = [encode_pair(tok, r.prompt, r.responses[i], max_len)[0] for i in (w, lo)]
            for i in (0, 1):  # one forward pass per side, as pairwise trainers do
                ids[i] = rm_scores(
                    model, pad([ids[i]], tok.pad_token_id), torch.ones(1, len(ids[i]))
                )
            losses.append(-F.logsigmoid(ids[0] - ids[1]).squeeze())
        per_prompt.append(torch.stack(losses).mean())
    return torch.stack(per_prompt).mean()


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_kway_batch_matches_expanded_pairs_with_k_forward_rows(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    torch.manual_seed(0)
    model = load_reward_model(tiny_dir, tok).eval()  # eval: no dropout, so both are exact
    counter = RowCounter(model)

    loss_k, _ = kway_loss(model, RankingCollator(tok, 128)(RECORDS))
    g_kway, rows_kway = grads(model, loss_k), counter.rows
    counter.rows = 0
    loss_p = expanded_pairs_loss(model, tok, RECORDS)
    g_pairs, rows_pairs = grads(model, loss_p), counter.rows

    assert loss_k.item() == pytest.approx(loss_p.item(), rel=1e-5)
    assert len(g_kway) == len(g_pairs) > 0
    for a, b in zip(g_kway, g_pairs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    n_pairs = 6 + 9  # C(4,2) + (C(5,2) − 1 tied pair)
    assert rows_kway == 4 + 5
    assert rows_pairs == 2 * n_pairs


def test_fold_score_offset_shifts_every_score_exactly(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    model = load_reward_model(tiny_dir, tok).eval()
    batch = RankingCollator(tok, 128)(RECORDS)
    before = rm_scores(model, batch["input_ids"], batch["attention_mask"])
    assert fold_score_offset(model, 1.5) == "final_norm.bias"
    after = rm_scores(model, batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(after, before + 1.5, rtol=0, atol=1e-5)


def test_saved_reward_model_scores_demonstrations_at_mean_zero(tiny_dir, tmp_path):
    write_jsonl(tmp_path / "rank.jsonl", synthetic_rankings(24, 4, seed=3))
    demos = [
        SFTRecord(prompt=f"describe the cat {i}.", completion="it is kind and true.")
        for i in range(5)
    ] + [SFTRecord(prompt="hello", completion="it is rude.")]
    write_jsonl(tmp_path / "demos.jsonl", demos)
    cfg = RewardConfig(
        base_model=str(tiny_dir),
        train_data=str(tmp_path / "rank.jsonl"),
        demonstrations=str(tmp_path / "demos.jsonl"),
        out=str(tmp_path / "rm"),
        valid_fraction=0.25,
        prompts_per_step=6,
        lr=1e-3,
        max_len=96,
    )
    calls = []
    out = train_reward_model(cfg, callback=lambda step, total, m: calls.append((step, total)))

    rm = AutoModelForSequenceClassification.from_pretrained(out, num_labels=1)
    tok = load_tokenizer(out)
    prompts, texts = [d.prompt for d in demos], [d.completion for d in demos]
    assert mean_score(rm, tok, prompts, texts, 96) == pytest.approx(0.0, abs=1e-4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert abs(manifest["metrics"]["demo_mean_before"]) > 1e-3  # there was an offset to fold
    assert manifest["kind"] == "rm" and manifest["parent_model"] == str(tiny_dir)
    assert manifest["data_files"][0]["sha256"] == sha256_file(tmp_path / "rank.jsonl")
    assert 0.0 <= manifest["metrics"]["val_accuracy"] <= 1.0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 + 1 and calls[-1][0] == calls[-1][1] == 3  # 3 steps + validation
    assert not list(tmp_path.glob(".rm*"))  # no temp dir or live metrics file left behind


def test_mean_pooled_scores_average_the_head_over_real_tokens_whatever_the_padding(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    model = load_reward_model(tiny_dir, tok).eval()
    batch = RankingCollator(tok, 128)(RECORDS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    last = rm_scores(model, ids, mask)
    set_score_pooling(model, "mean")
    mean = rm_scores(model, ids, mask)
    per_token = token_scores(model, input_ids=ids, attention_mask=mask)
    expected = torch.stack([row[m.bool()].mean() for row, m in zip(per_token, mask, strict=True)])
    torch.testing.assert_close(mean, expected)
    assert not torch.allclose(mean, last)  # not the last token's score
    # one sequence alone, unpadded: the same score as inside the padded batch
    n = int(mask[0].sum())
    alone = rm_scores(model, ids[:1, :n], mask[:1, :n])
    torch.testing.assert_close(alone, mean[:1], rtol=1e-5, atol=1e-5)
    # the demonstration offset still moves every score by exactly delta
    assert fold_score_offset(model, -0.75) == "final_norm.bias"
    torch.testing.assert_close(rm_scores(model, ids, mask), mean - 0.75, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="pooling must be one of last, mean"):
        set_score_pooling(model, "max")


def test_a_mean_pooled_reward_model_is_saved_and_read_back_as_trained(tiny_dir, tmp_path):
    write_jsonl(tmp_path / "rank.jsonl", synthetic_rankings(16, 4, seed=5))
    cfg = RewardConfig(base_model=str(tiny_dir), train_data=str(tmp_path / "rank.jsonl"),
                       out=str(tmp_path / "rm"), valid_fraction=0.25, prompts_per_step=6,
                       lr=1e-3, max_len=96, pooling="mean")
    out = train_reward_model(cfg)
    assert json.loads((out / "config.json").read_text())["score_pooling"] == "mean"
    tok = load_tokenizer(out)
    rm = load_reward_model(out, tok).eval()
    batch = RankingCollator(tok, 96)(RECORDS)
    per_token = token_scores(rm, input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"])
    weights = batch["attention_mask"].float()
    torch.testing.assert_close(rm_scores(rm, batch["input_ids"], batch["attention_mask"]),
                               (per_token * weights).sum(-1) / weights.sum(-1))
    bad = RewardConfig(**{**vars(cfg), "pooling": "max", "out": str(tmp_path / "bad")})
    with pytest.raises(ValueError, match="pooling"):
        train_reward_model(bad)
    assert not (tmp_path / "bad").exists()
