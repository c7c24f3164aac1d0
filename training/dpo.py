"""DPO on the same ranking exports, K-way: the cheaper path from rankings to a policy.

Direct Preference Optimization (Rafailov et al. 2023) skips the reward model and PPO: the
policy's implicit reward of a response is r = β·(log π(y|x) − log π_SFT(y|x)), summed over
the response tokens, and the ranking loss of PAPER.md is applied to it. As in the reward
stage, one batch element is one ranked prompt: each of its K responses takes one forward
row (policy and reference) and every non-tied pair is scored from those K numbers
(`training.losses.batched_ranking_loss`), so a K = 9 ranking costs 9 rows, not 72.
With `--lora-r` the reference is the policy with its adapters disabled (no second copy).
`--grad-accum` splits a step's prompts into micro-batches (the same step, less memory), and
`--checkpoint-every` with `--resume` continues a stopped run where its last checkpoint left
it, to the same model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from training.contract import DPOConfig
from training.data import (
    IGNORE,
    ensure_chat_template,
    lengths_mask,
    pad,
    sft_example,
)
from training.loop import (
    Checkpoints,
    TrackedRunLog,
    accumulate,
    make_accelerator,
    micro_batches,
)
from training.losses import batched_ranking_loss, pair_indices, pairwise_accuracy
from training.models import (
    load_policy,
    load_tokenizer,
    merged,
    prepare_model,
    restore_dropout,
    save_model_dir,
)
from training.outputs import Callback
from training.records import GroupedRecord
from training.reward import load_splits, ranking_loaders, sub_batch


@dataclass
class DPOCollator:
    """Rankings -> every response of P prompts as N = ΣK_p rows with response-only labels."""

    tok: Any
    max_len: int = 512

    def __call__(self, records: list[GroupedRecord]) -> dict[str, Any]:
        examples = [
            sft_example(self.tok, r.prompt, resp, self.max_len)
            for r in records
            for resp in r.responses
        ]
        ids = [e["input_ids"] for e in examples]
        return {
            "input_ids": pad(ids, self.tok.pad_token_id),
            "attention_mask": lengths_mask(ids),
            "labels": pad([e["labels"] for e in examples], IGNORE),
            "sizes": [len(r.responses) for r in records],
            "rankings": [r.ranking for r in records],
        }


def sequence_logps(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """log π(response | prompt) summed over the response tokens; (N,)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits, targets = logits[:, :-1].float(), batch["labels"][:, 1:]
    taken = targets != IGNORE
    logp = F.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * taken).sum(1)


def implicit_rewards(
    policy: Any, ref: Any, batch: dict[str, Any], beta: float, unwrapped: Any = None
) -> torch.Tensor:
    """β·(log π − log π_ref) of every response (N,): DPO's implicit reward.

    `ref` None: the reference is the (unwrapped) policy with its LoRA adapters disabled.
    """
    with torch.no_grad():
        if ref is None:
            base = unwrapped if unwrapped is not None else policy
            with base.disable_adapter():
                ref_logps = sequence_logps(base, batch)
        else:
            ref_logps = sequence_logps(ref, batch)
    return beta * (sequence_logps(policy, batch) - ref_logps)


def train_dpo(cfg: DPOConfig, callback: Callback | None = None) -> Path:
    """Train cfg.policy_model with DPO on the rankings and write it to cfg.out."""
    accelerator = make_accelerator(cfg, "dpo")
    set_seed(cfg.seed)
    tok = load_tokenizer(cfg.policy_model)
    layout = ensure_chat_template(tok)
    policy = prepare_model(load_policy(cfg.policy_model, tok, 0.0), cfg, "CAUSAL_LM")
    ref = None
    if cfg.lora_r <= 0:
        ref = load_policy(cfg.policy_model, tok, 0.0).eval().requires_grad_(False)
        ref = ref.to(accelerator.device)
    train, valid = load_splits(cfg)  # by prompt, as the reward model's
    loader, valid_loader, order = ranking_loaders(
        train, valid, DPOCollator(tok, cfg.max_len), cfg.prompts_per_step
    )
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    total = cfg.epochs * len(loader)
    sched = get_cosine_with_min_lr_schedule_with_warmup(
        opt, cfg.warmup_steps, total, min_lr_rate=cfg.min_lr_ratio
    )
    policy, opt, loader, valid_loader, sched = accelerator.prepare(
        policy, opt, loader, valid_loader, sched
    )
    unwrapped = accelerator.unwrap_model(policy)
    checkpoints = Checkpoints(cfg.out, cfg.checkpoint_every, accelerator)
    step, train_seconds, start_epoch, skip = 0, 0.0, 0, 0
    history: list[dict[str, Any]] = []
    resumed = checkpoints.load() if cfg.resume else None
    if resumed is not None:
        state = resumed[0]
        step, train_seconds, history = state["step"], state["train_seconds"], state["history"]
        start_epoch, skip = state["epoch"], state["batches_done"]
    log = TrackedRunLog(cfg.out, total, "dpo", callback, accelerator, history)
    for epoch in range(start_epoch, cfg.epochs):
        policy.train()
        order.manual_seed(cfg.seed + epoch)  # this epoch's shuffle, the same after a resume
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        started = time.perf_counter()
        for i, batch in enumerate(batches, start=skip):
            with_pairs = sum(1 for r in batch["rankings"] if pair_indices(r)[0]) or 1
            acc: list[int] = [0, 0]
            weights: list[float] = []

            def part_loss(part: slice, b: dict = batch, n: int = with_pairs, acc: list = acc,
                          weights: list = weights) -> tuple:
                sub = sub_batch(b, part)
                rewards = implicit_rewards(policy, ref, sub, cfg.beta, unwrapped)
                c, k = pairwise_accuracy(rewards.detach(), sub["rankings"], sub["sizes"])
                acc[0], acc[1] = acc[0] + c, acc[1] + k
                weights.append(sum(1 for r in sub["rankings"] if pair_indices(r)[0]) / n)
                loss = batched_ranking_loss(rewards, sub["rankings"], sub["sizes"])
                return loss, weights[-1]  # prompt-weighted: the whole batch's mean

            parts = micro_batches(len(batch["sizes"]), cfg.grad_accum)
            losses = accumulate(accelerator, policy, parts, part_loss)
            accelerator.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            train_seconds += time.perf_counter() - started  # batch loading included
            started = time.perf_counter()
            log.log(
                step,
                {
                    "epoch": epoch,
                    "loss": float(sum(x * w for x, w in zip(losses, weights, strict=True))),
                    "reward_accuracy": acc[0] / max(1, acc[1]),
                    "lr": sched.get_last_lr()[0],
                },
            )
            if checkpoints.due(step) and i + 1 < len(loader):
                checkpoints.save(step, {"epoch": epoch, "batches_done": i + 1,
                                        "train_seconds": train_seconds,
                                        "history": log.history})
                started = time.perf_counter()
        skip = 0
        if len(valid):
            policy.eval()
            totals = torch.zeros(4)
            with torch.no_grad():
                for batch in valid_loader:
                    rewards = implicit_rewards(policy, ref, batch, cfg.beta, unwrapped)
                    loss = batched_ranking_loss(rewards, batch["rankings"], batch["sizes"])
                    c, n = pairwise_accuracy(rewards, batch["rankings"], batch["sizes"])
                    totals += torch.tensor(
                        [c, n, loss.item() * len(batch["sizes"]), len(batch["sizes"])]
                    )
            log.log(
                step,
                {
                    "epoch": epoch,
                    "val_reward_accuracy": (totals[0] / totals[1].clamp(min=1)).item(),
                    "val_loss": (totals[2] / totals[3].clamp(min=1)).item(),
                },
                0,
            )
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        log.close()
        return Path(cfg.out)
    model = merged(accelerator.unwrap_model(policy))
    restore_dropout(model, cfg.policy_model)
    metrics = {k: v for row in log.history for k, v in row.items() if k != "step"}
    metrics.update(train_seconds=train_seconds, steps=step)
    out = save_model_dir(
        cfg.out,
        model,
        tok,
        log,
        kind="policy",
        parent_model=cfg.policy_model,
        config=cfg,
        metrics=metrics,
        data_files=[cfg.train_data, cfg.valid_data],
        extra={"method": "dpo", "prompt_layout": layout},
    )
    checkpoints.remove()
    return out
