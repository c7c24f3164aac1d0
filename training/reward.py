"""Stage 2: the reward model, trained K-way on rankings (PAPER.md, "Rankings → reward model").

One batch element is one ranked prompt: its K responses take K forward rows and all
C(K,2) non-tied pairs are scored from those K scores, several prompts per step. After
training the offset that makes demonstrations score 0 on average is folded into the
weights, and the directory loads with
`AutoModelForSequenceClassification.from_pretrained(dir, num_labels=1)`.
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

from training.contract import RewardConfig
from training.data import (
    ListDataset,
    RankingCollator,
    ensure_chat_template,
    prompt_key,
    read_rankings,
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
from training.losses import batched_ranking_loss, pair_indices, pairwise_accuracy
from training.models import (
    fold_score_offset,
    load_reward_model,
    load_tokenizer,
    merged,
    prepare_model,
    restore_dropout,
    rm_scores,
    save_model_dir,
    set_score_pooling,
)
from training.outputs import Callback
from training.records import GroupedRecord
from training.sampling import rm_reward_fn


def kway_loss(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, scores (N,)) of a batch of ranked prompts: one forward row per response."""
    scores = rm_scores(model, batch["input_ids"], batch["attention_mask"])  # (N,)
    return batched_ranking_loss(scores, batch["rankings"], batch["sizes"]), scores


def sub_batch(batch: dict[str, Any], part: slice) -> dict[str, Any]:
    """The prompts `part` of a ranking batch with their rows (for gradient accumulation)."""
    if part == slice(0, len(batch["sizes"])):
        return batch
    offsets = [0]
    for k in batch["sizes"]:
        offsets.append(offsets[-1] + k)
    rows = slice(offsets[part.start], offsets[part.stop])
    return {
        **{k: batch[k][rows] for k in ("input_ids", "attention_mask", "labels") if k in batch},
        "sizes": batch["sizes"][part],
        "rankings": batch["rankings"][part],
    }


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


def load_splits(cfg: Any) -> tuple[list[GroupedRecord], list[GroupedRecord]]:
    """Training and held-out rankings (cfg: train_data, valid_data, valid_fraction, seed)."""
    train = read_rankings(cfg.train_data)
    if cfg.valid_data:
        return train, read_rankings(cfg.valid_data)
    # by prompt: several labelers' rankings of one prompt stay on the same side
    return split_holdout(train, cfg.valid_fraction, cfg.seed, key=prompt_key)


def ranking_loaders(
    train: list[GroupedRecord], valid: list[GroupedRecord], collate: Any, prompts_per_step: int
) -> tuple[DataLoader, DataLoader, torch.Generator]:
    """Loaders of ranked prompts (each with all K responses), and the generator of the
    training order: reseeded per epoch, it gives the same order after a resume."""
    order = torch.Generator()
    loader = DataLoader(
        ListDataset(train),
        batch_size=prompts_per_step,
        shuffle=True,
        collate_fn=collate,
        generator=order,
    )
    valid_loader = DataLoader(ListDataset(valid), batch_size=prompts_per_step, collate_fn=collate)
    return loader, valid_loader, order


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
    accelerator = make_accelerator(cfg, "rm")
    set_seed(cfg.seed)
    tok = load_tokenizer(cfg.base_model)
    layout = ensure_chat_template(tok)
    model = load_reward_model(cfg.base_model, tok, cfg.dropout)
    set_score_pooling(model, cfg.pooling)  # saved in its config: every reader pools the same
    model = prepare_model(model, cfg, "SEQ_CLS")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train, valid = load_splits(cfg)
    loader, valid_loader, order = ranking_loaders(
        train, valid, RankingCollator(tok, cfg.max_len), cfg.prompts_per_step
    )
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    total = cfg.epochs * len(loader)
    sched = get_cosine_with_min_lr_schedule_with_warmup(
        opt, cfg.warmup_steps, total, min_lr_rate=cfg.min_lr_ratio
    )
    model, opt, loader, valid_loader, sched = accelerator.prepare(
        model, opt, loader, valid_loader, sched
    )
    checkpoints = Checkpoints(cfg.out, cfg.checkpoint_every, accelerator)
    step, n_pairs, train_seconds, cpu_seconds, start_epoch, skip = 0, 0, 0.0, 0.0, 0, 0
    history: list[dict[str, Any]] = []
    resumed = checkpoints.load() if cfg.resume else None
    if resumed is not None:
        state = resumed[0]
        step, n_pairs, start_epoch, skip = (
            state["step"],
            state["pairs"],
            state["epoch"],
            state["batches_done"],
        )
        train_seconds, cpu_seconds, history = (
            state["train_seconds"],
            state["cpu_seconds"],
            state["history"],
        )
    log = TrackedRunLog(cfg.out, total, "reward model", callback, accelerator, history)

    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        order.manual_seed(cfg.seed + epoch)  # this epoch's shuffle, the same after a resume
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        started, cpu_started = time.perf_counter(), time.process_time()
        for i, batch in enumerate(batches, start=skip):
            parts = micro_batches(len(batch["sizes"]), cfg.grad_accum)
            # prompts with pairs in the global batch (every process's): the loss is their mean
            with_pairs = max(1.0, across_processes(
                accelerator, sum(1 for r in batch["rankings"] if pair_indices(r)[0])))
            acc: list[int] = [0, 0]
            weights: list[float] = []

            def part_loss(
                part: slice,
                b: dict = batch,
                n: float = with_pairs,
                acc: list[int] = acc,
                weights: list[float] = weights,
            ) -> tuple:
                sub = sub_batch(b, part)
                loss, scores = kway_loss(model, sub)
                c, k = pairwise_accuracy(scores.detach(), sub["rankings"], sub["sizes"])
                acc[0], acc[1] = acc[0] + c, acc[1] + k
                weights.append(sum(1 for r in sub["rankings"] if pair_indices(r)[0]) / n)
                # prompt-weighted: the whole batch's mean (DDP averages the processes')
                return loss, weights[-1] * accelerator.num_processes

            losses = accumulate(accelerator, model, parts, part_loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            train_seconds += time.perf_counter() - started  # since the last step ended:
            cpu_seconds += time.process_time() - cpu_started  # batch loading included
            started, cpu_started = time.perf_counter(), time.process_time()
            # per-step metrics: training accuracy on this batch's pairs, throughput
            correct, pairs = (int(across_processes(accelerator, x)) for x in acc)
            step, n_pairs = step + 1, n_pairs + pairs
            log.log(
                step,
                {
                    "epoch": epoch,
                    "loss": across_processes(
                        accelerator, sum(x * w for x, w in zip(losses, weights, strict=True))),
                    "accuracy": correct / max(1, pairs),
                    "comparisons_per_s": n_pairs / max(train_seconds, 1e-9),
                    "cpu_seconds": cpu_seconds,  # robust to machine load
                    "lr": sched.get_last_lr()[0],
                },
            )
            if checkpoints.due(step) and i + 1 < len(loader):
                checkpoints.save(
                    step,
                    {
                        "pairs": n_pairs,
                        "epoch": epoch,
                        "batches_done": i + 1,
                        "train_seconds": train_seconds,
                        "cpu_seconds": cpu_seconds,
                        "history": log.history,
                    },
                )
                started, cpu_started = time.perf_counter(), time.process_time()
        skip = 0
        if len(valid):
            log.log(step, {"epoch": epoch, **evaluate(model, valid_loader, accelerator)}, 0)

    # fold the demonstration offset into the weights so scores are centred on demos
    metrics = {k: v for row in log.history for k, v in row.items() if k.startswith("val_")}
    metrics.update(
        train_comparisons=n_pairs, train_seconds=train_seconds, trainable_params=trainable
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        rm = merged(accelerator.unwrap_model(model))
        restore_dropout(rm, cfg.base_model)
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
            extra={
                "score_offset": {"source": source, "folded_into": where},
                "prompt_layout": layout,
                "train_rankings": len(train),
                "valid_rankings": len(valid),
            },
        )
        checkpoints.remove()
    else:
        log.close()
    accelerator.wait_for_everyone()
    return Path(cfg.out)
