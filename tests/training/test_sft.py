"""SFT: the loss sees response tokens only; the stage trains, validates and selects."""

import json

import pytest
import torch

from training.data import IGNORE, SFTCollator, sft_example
from training.losses import sft_loss
from training.models import load_policy, load_tokenizer
from training.records import SFTRecord, write_jsonl
from training.sft import SFTConfig, train_sft
from training.tiny import synthetic_corpus

DEMOS = [
    SFTRecord(prompt="say hello to the cat", completion="hello cat."),
    SFTRecord(prompt="count", completion="one two three."),
]


def test_labels_mask_exactly_the_prompt_tokens(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    ex = sft_example(tok, "abc", "xy", max_len=64)
    n_prompt = len(tok("abc\n\n", add_special_tokens=False).input_ids)
    assert ex["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["input_ids"][-1] == tok.eos_token_id  # the model learns to stop


def test_sft_loss_ignores_prompt_positions_and_gives_them_no_gradient(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    batch = SFTCollator(tok, 64)(DEMOS)
    torch.manual_seed(0)
    logits = torch.randn(*batch["input_ids"].shape, len(tok), requires_grad=True)
    loss = sft_loss(logits, batch["labels"])
    loss.backward()
    # position t predicts t + 1: positions whose next token is unlabelled take no gradient
    takes_loss = torch.zeros(batch["labels"].shape, dtype=torch.bool)
    takes_loss[:, :-1] = batch["labels"][:, 1:] != IGNORE
    assert logits.grad[~takes_loss].abs().max() == 0
    assert (logits.grad[takes_loss].abs().sum(-1) > 0).all()

    perturbed = logits.detach().clone()
    perturbed[~takes_loss] += 10 * torch.randn_like(perturbed[~takes_loss])
    assert sft_loss(perturbed, batch["labels"]).item() == pytest.approx(loss.item(), abs=1e-6)
    changed = batch["labels"].clone()
    changed[changed == IGNORE] = 5  # pretend the prompt were a target: the loss must change
    assert sft_loss(logits.detach(), changed).item() != pytest.approx(loss.item(), abs=1e-3)


def test_model_loss_does_not_depend_on_prompt_labels(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    model = load_policy(tiny_dir, tok).eval()
    batch = SFTCollator(tok, 64)(DEMOS)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    manual = []
    for row_logits, ids, labels in zip(logits, batch["input_ids"], batch["labels"], strict=True):
        for t in range(len(ids) - 1):
            if labels[t + 1] != IGNORE:
                manual.append(-torch.log_softmax(row_logits[t], -1)[ids[t + 1]])
    assert sft_loss(logits, batch["labels"]).item() == pytest.approx(
        torch.stack(manual).mean().item(), rel=1e-5
    )


def write_demos(path, n, seed):
    corpus = synthetic_corpus(n, seed=seed)
    write_jsonl(
        path,
        [
            SFTRecord(prompt=f"write about item {i}", completion=text[:40])
            for i, text in enumerate(corpus)
        ],
    )


def test_train_sft_lowers_val_loss_and_selects_best_reward_epoch(tiny_dir, tmp_path):
    write_demos(tmp_path / "train.jsonl", 32, seed=5)
    write_demos(tmp_path / "valid.jsonl", 8, seed=6)

    # toy reward: shorter answers are better, so the selected epoch is a choice, not a default
    def reward(prompts, texts):
        return -torch.tensor([float(len(t)) for t in texts])

    cfg = SFTConfig(
        base_model=str(tiny_dir),
        train_data=str(tmp_path / "train.jsonl"),
        valid_data=str(tmp_path / "valid.jsonl"),
        out=str(tmp_path / "sft"),
        epochs=3,
        batch_size=8,
        lr=2e-3,
        dropout=0.0,
        max_len=80,
        eval_prompts=4,
        eval_max_new_tokens=24,
    )
    out = train_sft(cfg, reward=reward)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "val_loss" in r]
    assert len(epochs) == 3 and len(rows) == 3 * 4 + 3
    manifest = json.loads((out / "manifest.json").read_text())
    best = max(range(3), key=lambda e: epochs[e]["val_reward"])
    assert manifest["metrics"]["selected_epoch"] == best
    assert manifest["metrics"]["selected_by"] == "reward"
    # fine-tuning actually fits the demonstrations: first-epoch val loss beats the base model
    tok = load_tokenizer(tiny_dir)
    base = load_policy(tiny_dir, tok).eval()
    batch = SFTCollator(tok, 80)(
        [SFTRecord(**json.loads(x)) for x in (tmp_path / "valid.jsonl").read_text().splitlines()]
    )
    with torch.no_grad():
        base_loss = sft_loss(
            base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
            batch["labels"],
        )
    assert epochs[-1]["val_loss"] < base_loss.item() - 0.1
    assert (out / "config.json").exists() and (out / "tokenizer_config.json").exists()


def test_sft_dropout_is_residual_only_and_does_not_follow_the_directory(tiny_dir, tmp_path):
    from transformers import AutoConfig

    from training.models import dropout_kwargs

    set_to = dropout_kwargs(tiny_dir, 0.2)
    assert set_to["resid_pdrop"] == 0.2
    assert set_to["embd_pdrop"] == 0.0 and set_to["attn_pdrop"] == 0.0
    model = load_policy(tiny_dir, load_tokenizer(tiny_dir), 0.2)
    assert (model.config.resid_pdrop, model.config.attn_pdrop) == (0.2, 0.0)

    write_demos(tmp_path / "train.jsonl", 8, seed=5)
    out = train_sft(
        SFTConfig(
            base_model=str(tiny_dir),
            train_data=str(tmp_path / "train.jsonl"),
            out=str(tmp_path / "sft"),
            epochs=1,
            batch_size=4,
            max_len=64,
            select_by="last",
            tracker="none",
        )
    )
    saved, base = AutoConfig.from_pretrained(out), AutoConfig.from_pretrained(tiny_dir)
    assert (saved.resid_pdrop, saved.attn_pdrop) == (base.resid_pdrop, base.attn_pdrop)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dropout_set"]["resid_pdrop"] == 0.2
    assert manifest["prompt_layout"] == "plain"


def test_reward_model_trains_without_dropout(tiny_dir, tmp_path):
    from training.models import load_reward_model
    from training.reward import RewardConfig

    tok = load_tokenizer(tiny_dir)
    policy = load_policy(tiny_dir, tok, 0.2)
    policy.config.embd_pdrop = policy.config.attn_pdrop = 0.2
    policy.save_pretrained(tmp_path / "sft")  # an SFT directory that kept its dropout
    tok.save_pretrained(tmp_path / "sft")
    rm = load_reward_model(tmp_path / "sft", tok, RewardConfig().dropout)
    assert rm.config.resid_pdrop == rm.config.attn_pdrop == rm.config.embd_pdrop == 0.0
    dropouts = [m.p for m in rm.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(p == 0.0 for p in dropouts)
