"""Stage 1: supervised fine-tuning on demonstrations (PAPER.md, "Demonstrations → SFT").

Next-token loss on the response tokens only, cosine decay with warm-up, residual dropout
0.2, validation loss every epoch. Validation loss overfits after one epoch while reward keeps
improving, so with a reward model the kept checkpoint is the epoch whose sampled answers
to validation prompts score best; without one, the last epoch (or the lowest val loss).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from training.contract import SFTConfig
from training.data import (
    IGNORE,
    ListDataset,
    SFTCollator,
    ensure_chat_template,
    prompt_key,
    prompt_of,
    read_sft,
    split_holdout,
)
from training.loop import (
    Checkpoints,
    TrackedRunLog,
    accumulate,
    across_processes,
    make_accelerator,
    micro_batches,
)
from training.losses import sft_loss
from training.models import (
    dropout_kwargs,
    load_policy,
    load_tokenizer,
    merged,
    prepare_model,
    restore_dropout,
    save_model_dir,
)
from training.outputs import Callback
from training.sampling import RewardFn, rm_reward_fn, sample


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
    model: Any, tok: Any, reward: RewardFn, prompts: list[Any], cfg: SFTConfig
) -> float:
    """Mean RM score of one sampled answer per validation prompt (text or chat turns)."""
    model.eval()
    with torch.random.fork_rng(devices=[]):  # evaluation does not shift training randomness
        torch.manual_seed(cfg.seed)
        texts = [
            t[0] for t in sample(model, tok, prompts, 1, max_new_tokens=cfg.eval_max_new_tokens)
        ]
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
    accelerator = make_accelerator(cfg, "sft")
    set_seed(cfg.seed)
    tok = load_tokenizer(cfg.base_model)
    layout = ensure_chat_template(tok)
    model = prepare_model(load_policy(cfg.base_model, tok, cfg.dropout), cfg, "CAUSAL_LM")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train = read_sft(cfg.train_data)
    valid = read_sft(cfg.valid_data) if cfg.valid_data else None
    if valid is None:  # by prompt: one prompt's demonstrations never straddle the split
        train, valid = split_holdout(train, cfg.valid_fraction, cfg.seed, key=prompt_key)
    if reward is None and cfg.reward_model:
        reward = rm_reward_fn(cfg.reward_model)
    select = selection_rule(cfg, reward)
    collate = SFTCollator(tok, cfg.max_len)
    loader = DataLoader(
        ListDataset(train),
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=(order := torch.Generator()),
    )
    valid_loader = DataLoader(ListDataset(valid), batch_size=cfg.batch_size, collate_fn=collate)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    total = cfg.epochs * len(loader)
    sched = get_cosine_with_min_lr_schedule_with_warmup(
        opt, int(cfg.warmup_ratio * total), total, min_lr_rate=cfg.min_lr_ratio
    )
    model, opt, loader, valid_loader, sched = accelerator.prepare(
        model, opt, loader, valid_loader, sched
    )
    checkpoints = Checkpoints(cfg.out, cfg.checkpoint_every, accelerator)
    step, tokens, train_seconds, start_epoch, skip = 0, 0, 0.0, 0, 0
    best: dict[str, Any] = {"score": None, "epoch": None, "state": None}
    history: list[dict[str, Any]] = []
    resumed = checkpoints.load() if cfg.resume else None
    if resumed is not None:
        state, extra = resumed
        step, tokens, train_seconds = state["step"], state["tokens"], state["train_seconds"]
        start_epoch, skip, history = state["epoch"], state["batches_done"], state["history"]
        best = {"score": state["best_score"], "epoch": state["best_epoch"], "state": extra}
    log = TrackedRunLog(cfg.out, total, "sft", callback, accelerator, history)
    eval_prompts = [prompt_of(r) for r in valid[: cfg.eval_prompts]]

    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        order.manual_seed(cfg.seed + epoch)  # this epoch's shuffle, the same after a resume
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        started = time.perf_counter()  # validation and checkpoints are not training time
        for i, batch in enumerate(batches, start=skip):
            # token-weighted over the global batch (every process's tokens): its exact mean
            n_tokens = max(1.0, across_processes(
                accelerator, (batch["labels"][:, 1:] != IGNORE).sum()))

            def micro_loss(part: slice, batch: dict = batch, n: float = n_tokens) -> tuple:
                logits = model(
                    input_ids=batch["input_ids"][part], attention_mask=batch["attention_mask"][part]
                ).logits
                labels = batch["labels"][part]
                share = (labels[:, 1:] != IGNORE).sum() / n
                # DDP averages the processes' gradients: a share of the global batch × P
                return sft_loss(logits, labels), share * accelerator.num_processes

            parts = micro_batches(len(batch["input_ids"]), cfg.grad_accum)
            losses = accumulate(accelerator, model, parts, micro_loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            shares = [(batch["labels"][p][:, 1:] != IGNORE).sum() / n_tokens for p in parts]
            loss = across_processes(
                accelerator, sum(x * s for x, s in zip(losses, shares, strict=True)))
            step = step + 1
            tokens += int(across_processes(accelerator, batch["attention_mask"].sum()))
            train_seconds += time.perf_counter() - started  # batch loading included
            started = time.perf_counter()
            log.log(
                step,
                {
                    "epoch": epoch,
                    "loss": float(loss),
                    "lr": sched.get_last_lr()[0],
                    "tokens_per_s": tokens / max(train_seconds, 1e-9),  # training time only
                },
            )
            last_batch = i + 1 == len(loader)
            if checkpoints.due(step) and not last_batch:
                checkpoints.save(
                    step,
                    {**_sft_state(tokens, train_seconds, epoch, i + 1, best, log.history)},
                    best["state"],
                )
                started = time.perf_counter()
        skip = 0

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
            lora = cfg.lora_r > 0  # with adapters only they change: keep only them
            best = {
                "score": score,
                "epoch": epoch,
                "state": {
                    k: v.detach().to("cpu", copy=True)
                    for k, v in state.items()
                    if not lora or "lora_" in k
                },
            }
        if cfg.checkpoint_every > 0 and epoch + 1 < cfg.epochs:
            checkpoints.save(
                step,
                _sft_state(tokens, train_seconds, epoch + 1, 0, best, log.history),
                best["state"],
            )

    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        log.close()
        return Path(cfg.out)
    final = accelerator.unwrap_model(model)
    final.load_state_dict(best["state"], strict=cfg.lora_r <= 0)  # the selected epoch's
    final = merged(final)
    restore_dropout(final, cfg.base_model)
    epochs = [r for r in log.history if "val_loss" in r]
    metrics = {
        "selected_epoch": best["epoch"],
        "selected_by": select,
        **{k: v for k, v in epochs[best["epoch"]].items() if k != "step"},
        "train_tokens": tokens,
        "train_seconds": train_seconds,
        "trainable_params": trainable,
    }
    out = save_model_dir(
        cfg.out,
        final,
        tok,
        log,
        kind="sft",
        parent_model=cfg.base_model,
        config=cfg,
        metrics=metrics,
        data_files=[cfg.train_data, cfg.valid_data],
        extra={
            "prompt_layout": layout,
            "dropout_set": dropout_kwargs(cfg.base_model, cfg.dropout),
        },
    )
    checkpoints.remove()
    return out


def _sft_state(
    tokens: int, seconds: float, epoch: int, done: int, best: dict, history: list
) -> dict[str, Any]:
    """The loop's position for a checkpoint (weights go through accelerate's state)."""
    return {
        "tokens": tokens,
        "train_seconds": seconds,
        "epoch": epoch,
        "batches_done": done,
        "best_score": best["score"],
        "best_epoch": best["epoch"],
        "history": history,
    }
