"""Stage 1: supervised fine-tuning on demonstrations (PAPER.md, "Demonstrations → SFT").

Next-token loss on the response tokens only, cosine decay with warm-up, dropout 0.2,
validation loss every epoch. Validation loss overfits after one epoch while reward keeps
improving, so with a reward model the kept checkpoint is the epoch whose sampled answers
to validation prompts score best; without one, the last epoch (or the lowest val loss).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from training.data import ListDataset, SFTCollator, read_sft, split_holdout
from training.losses import sft_loss
from training.models import load_policy, load_tokenizer, save_model_dir
from training.outputs import Callback, RunLog
from training.sampling import RewardFn, rm_reward_fn, sample


@dataclass
class SFTConfig:
    """Supervised fine-tuning hyperparameters; defaults are the paper's where it gives them."""

    base_model: str = "models/base"  # causal-LM directory or hub id to fine-tune
    train_data: str = "data/sft.jsonl"  # sft export (prompt/completion or chat messages)
    out: str = "models/sft"  # output model directory
    valid_data: str | None = None  # held-out demonstrations; if None, hold out valid_fraction
    valid_fraction: float = 0.05  # share of train_data held out when valid_data is None
    reward_model: str | None = None  # RM dir: keep the epoch whose samples score best
    select_by: str = "auto"  # reward | val_loss | last; auto = reward if an RM is given, else last
    epochs: int = 16  # paper: 16 (more epochs keep raising RM score despite val-loss overfit)
    batch_size: int = 32  # demonstrations per optimiser step
    lr: float = 1e-5  # peak learning rate
    min_lr_ratio: float = 0.0  # cosine decays to this share of lr
    warmup_ratio: float = 0.03  # share of steps spent warming up linearly
    weight_decay: float = 0.0  # AdamW weight decay
    dropout: float | None = 0.2  # residual/attention/embedding dropout (paper 0.2; None keeps)
    grad_clip: float = 1.0  # max gradient norm
    max_len: int = 512  # tokens per prompt + response
    eval_prompts: int = 32  # validation prompts sampled per epoch for reward selection
    eval_max_new_tokens: int = 64  # response length when sampling for selection
    seed: int = 0  # seeds shuffling, dropout and sampling
    cpu: bool = False  # run on CPU even if an accelerator is present


@torch.no_grad()
def validation_loss(model: Any, loader: DataLoader, accelerator: Accelerator) -> float:
    """Token-mean response loss over the validation demonstrations."""
    model.eval()
    total = torch.zeros(2, device=accelerator.device)  # loss·tokens, tokens
    for batch in loader:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        n = (batch["labels"][:, 1:] != -100).sum()
        total += torch.stack([sft_loss(logits, batch["labels"]) * n, n.float()])
    total = accelerator.gather(total.unsqueeze(0)).sum(0)
    model.train()
    return (total[0] / total[1].clamp(min=1)).item()


@torch.no_grad()
def validation_reward(
    model: Any, tok: Any, reward: RewardFn, prompts: list[str], cfg: SFTConfig
) -> float:
    """Mean RM score of one sampled answer per validation prompt."""
    model.eval()
    texts = [t[0] for t in sample(model, tok, prompts, 1, max_new_tokens=cfg.eval_max_new_tokens)]
    model.train()
    return reward(prompts, texts).mean().item()


def selection_rule(cfg: SFTConfig, reward: Any) -> str:
    """Resolve select_by='auto' (reward when a reward model is given, else last)."""
    if cfg.select_by == "auto":
        return "reward" if reward is not None else "last"
    if cfg.select_by == "reward" and reward is None:
        raise ValueError("select_by='reward' needs a reward model")
    return cfg.select_by


def train_sft(
    cfg: SFTConfig, callback: Callback | None = None, reward: RewardFn | None = None
) -> Path:
    """Fine-tune cfg.base_model on demonstrations; `reward` overrides cfg.reward_model."""
    accelerator = Accelerator(cpu=cfg.cpu)
    set_seed(cfg.seed)
    tok = load_tokenizer(cfg.base_model)
    model = load_policy(cfg.base_model, tok, cfg.dropout)
    train = read_sft(cfg.train_data)
    valid = read_sft(cfg.valid_data) if cfg.valid_data else None
    if valid is None:
        train, valid = split_holdout(train, cfg.valid_fraction, cfg.seed)
    if reward is None and cfg.reward_model:
        reward = rm_reward_fn(cfg.reward_model)
    select = selection_rule(cfg, reward)
    collate = SFTCollator(tok, cfg.max_len)
    loader = DataLoader(
        ListDataset(train), batch_size=cfg.batch_size, shuffle=True, collate_fn=collate
    )
    valid_loader = DataLoader(ListDataset(valid), batch_size=cfg.batch_size, collate_fn=collate)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(loader)
    sched = get_cosine_with_min_lr_schedule_with_warmup(
        opt, int(cfg.warmup_ratio * total), total, min_lr_rate=cfg.min_lr_ratio
    )
    model, opt, loader, valid_loader, sched = accelerator.prepare(
        model, opt, loader, valid_loader, sched
    )
    log = RunLog(cfg.out, total, "sft", callback, accelerator.is_main_process)
    eval_prompts = [r.prompt for r in valid[: cfg.eval_prompts]]

    step, tokens, started = 0, 0, time.perf_counter()
    best: dict[str, Any] = {"score": None, "epoch": None, "state": None}
    model.train()
    for epoch in range(cfg.epochs):
        for batch in loader:
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            loss = sft_loss(logits, batch["labels"])
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step, tokens = step + 1, tokens + int(batch["attention_mask"].sum())
            log.log(
                step,
                {
                    "epoch": epoch,
                    "loss": loss.item(),
                    "lr": sched.get_last_lr()[0],
                    "tokens_per_s": tokens / (time.perf_counter() - started),
                },
            )

        # end of epoch: validation loss, and the RM score of sampled answers if we can
        row = {"epoch": epoch, "val_loss": validation_loss(model, valid_loader, accelerator)}
        if reward is not None and eval_prompts:
            row["val_reward"] = validation_reward(
                accelerator.unwrap_model(model), tok, reward, eval_prompts, cfg
            )
        log.log(step, row, 0)
        score = {"reward": row.get("val_reward"), "val_loss": -row["val_loss"], "last": epoch}[
            select
        ]
        if best["score"] is None or score > best["score"]:
            state = accelerator.unwrap_model(model).state_dict()
            best = {
                "score": score,
                "epoch": epoch,
                "state": {k: v.detach().to("cpu", copy=True) for k, v in state.items()},
            }

    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        log.close()
        return Path(cfg.out)
    final = accelerator.unwrap_model(model)
    final.load_state_dict(best["state"])  # the selected epoch's weights
    epochs = [r for r in log.history if "val_loss" in r]
    metrics = {
        "selected_epoch": best["epoch"],
        "selected_by": select,
        **{k: v for k, v in epochs[best["epoch"]].items() if k != "step"},
        "train_tokens": tokens,
        "train_seconds": time.perf_counter() - started,
    }
    return save_model_dir(
        cfg.out,
        final,
        tok,
        log,
        kind="sft",
        parent_model=cfg.base_model,
        config=cfg,
        metrics=metrics,
        data_files=[cfg.train_data, cfg.valid_data],
    )
