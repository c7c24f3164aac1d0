"""Stage 2: the reward model, trained K-way on rankings (PAPER.md, "Rankings → reward model").

One batch element is one ranked prompt: its K responses take K forward rows and all
C(K,2) non-tied pairs are scored from those K scores, several prompts per step. After
training the offset that makes demonstrations score 0 on average is folded into the
weights, and the directory loads with
`AutoModelForSequenceClassification.from_pretrained(dir, num_labels=1)`.
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

from training.data import ListDataset, RankingCollator, read_rankings, read_sft, split_holdout
from training.losses import batched_ranking_loss, pairwise_accuracy
from training.models import (
    fold_score_offset,
    load_reward_model,
    load_tokenizer,
    rm_scores,
    save_model_dir,
)
from training.outputs import Callback, RunLog
from training.records import GroupedRecord
from training.sampling import rm_reward_fn


@dataclass
class RewardConfig:
    """Reward-model hyperparameters; defaults are the paper's."""

    base_model: str = "models/sft"  # SFT model directory or any causal-LM dir / hub id
    train_data: str = "data/rankings.jsonl"  # grouped, rankings or comparisons export
    out: str = "models/rm"  # output model directory
    valid_data: str | None = None  # held-out rankings; if None, hold out valid_fraction
    valid_fraction: float = 0.05  # share of train_data held out when valid_data is None
    demonstrations: str | None = None  # sft export that should score 0 on average
    epochs: int = 1  # paper: a single epoch (the RM overfits after one pass)
    prompts_per_step: int = 64  # ranked prompts per optimiser step (each brings all K)
    lr: float = 9e-6  # peak learning rate (paper, 6B RM)
    min_lr_ratio: float = 0.1  # cosine decay ends at this share of lr
    warmup_steps: int = 0  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max gradient norm
    max_len: int = 512  # tokens per prompt + response
    dropout: float | None = None  # override the model's dropout (None keeps it)
    seed: int = 0  # seeds shuffling and the new head
    cpu: bool = False  # run on CPU even if an accelerator is present


def kway_loss(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, scores (N,)) of a batch of ranked prompts: one forward row per response."""
    scores = rm_scores(model, batch["input_ids"], batch["attention_mask"])  # (N,)
    return batched_ranking_loss(scores, batch["rankings"], batch["sizes"]), scores


@torch.no_grad()
def evaluate(model: Any, loader: DataLoader, accelerator: Accelerator) -> dict[str, float]:
    """Pairwise accuracy and mean ranking loss on held-out rankings."""
    model.eval()
    totals = torch.zeros(4, device=accelerator.device)  # correct pairs, pairs, loss sum, prompts
    for batch in loader:
        loss, scores = kway_loss(model, batch)
        correct, n = pairwise_accuracy(scores, batch["rankings"], batch["sizes"])
        totals += torch.tensor(
            [correct, n, loss.item() * len(batch["sizes"]), len(batch["sizes"])],
            device=totals.device,
        )
    totals = accelerator.gather(totals.unsqueeze(0)).sum(0)
    model.train()
    return {
        "val_accuracy": (totals[0] / totals[1].clamp(min=1)).item(),
        "val_loss": (totals[2] / totals[3].clamp(min=1)).item(),
    }


def mean_score(
    model: Any, tok: Any, prompts: list[str], responses: list[str], max_len: int
) -> float:
    """Mean RM score of (prompt, response) pairs, tokenised as in training."""
    model.eval()
    return rm_reward_fn(model, tok, max_len)(prompts, responses).mean().item()


def load_splits(cfg: RewardConfig) -> tuple[list[GroupedRecord], list[GroupedRecord]]:
    """Training and held-out rankings."""
    train = read_rankings(cfg.train_data)
    if cfg.valid_data:
        return train, read_rankings(cfg.valid_data)
    return split_holdout(train, cfg.valid_fraction, cfg.seed)


def demonstration_pairs(cfg: RewardConfig, train: list[GroupedRecord]) -> tuple[list, list, str]:
    """(prompts, responses, source) that should score 0 on average after training.

    The labelers' demonstrations when given; otherwise every training response, so the
    scores are at least centred on the data the RM saw.
    """
    if cfg.demonstrations:
        demos = read_sft(cfg.demonstrations)
        return [d.prompt for d in demos], [d.completion for d in demos], "demonstrations"
    pairs = [(r.prompt, resp) for r in train for resp in r.responses]
    return [p for p, _ in pairs], [r for _, r in pairs], "train_responses"


def train_reward_model(cfg: RewardConfig, callback: Callback | None = None) -> Path:
    """Train the RM on cfg.train_data and write it to cfg.out; returns the directory."""
    accelerator = Accelerator(cpu=cfg.cpu)
    set_seed(cfg.seed)
    tok = load_tokenizer(cfg.base_model)
    model = load_reward_model(cfg.base_model, tok, cfg.dropout)
    train, valid = load_splits(cfg)
    collate = RankingCollator(tok, cfg.max_len)
    loader = DataLoader(
        ListDataset(train), batch_size=cfg.prompts_per_step, shuffle=True, collate_fn=collate
    )
    valid_loader = DataLoader(
        ListDataset(valid), batch_size=cfg.prompts_per_step, collate_fn=collate
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(loader)
    sched = get_cosine_with_min_lr_schedule_with_warmup(
        opt, cfg.warmup_steps, total, min_lr_rate=cfg.min_lr_ratio
    )
    model, opt, loader, valid_loader, sched = accelerator.prepare(
        model, opt, loader, valid_loader, sched
    )
    log = RunLog(cfg.out, total, "reward model", callback, accelerator.is_main_process)

    step, n_pairs, started, cpu_started = 0, 0, time.perf_counter(), time.process_time()
    model.train()
    for epoch in range(cfg.epochs):
        for batch in loader:
            loss, scores = kway_loss(model, batch)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            # per-step metrics: training accuracy on this batch's pairs, throughput
            correct, pairs = pairwise_accuracy(scores.detach(), batch["rankings"], batch["sizes"])
            step, n_pairs = step + 1, n_pairs + pairs
            elapsed = time.perf_counter() - started
            log.log(
                step,
                {
                    "epoch": epoch,
                    "loss": loss.item(),
                    "accuracy": correct / max(1, pairs),
                    "comparisons_per_s": n_pairs / elapsed,
                    "cpu_seconds": time.process_time() - cpu_started,  # robust to machine load
                    "lr": sched.get_last_lr()[0],
                },
            )
        if len(valid):
            log.log(step, {"epoch": epoch, **evaluate(model, valid_loader, accelerator)}, 0)

    # fold the demonstration offset into the weights so scores are centred on demos
    metrics = {k: v for row in log.history for k, v in row.items() if k.startswith("val_")}
    metrics.update(train_comparisons=n_pairs, train_seconds=time.perf_counter() - started)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        rm = accelerator.unwrap_model(model)
        prompts, responses, source = demonstration_pairs(cfg, train)
        offset = mean_score(rm, tok, prompts, responses, cfg.max_len)
        where = fold_score_offset(rm, -offset)
        metrics.update(
            demo_mean_before=offset,
            demo_mean_after=mean_score(rm, tok, prompts, responses, cfg.max_len),
        )
        save_model_dir(
            cfg.out,
            rm,
            tok,
            log,
            kind="rm",
            parent_model=cfg.base_model,
            config=cfg,
            metrics=metrics,
            data_files=[cfg.train_data, cfg.valid_data, cfg.demonstrations],
            extra={"score_offset": {"source": source, "folded_into": where}},
        )
    else:
        log.close()
    accelerator.wait_for_everyone()
    return Path(cfg.out)
