"""Stage 3: PPO / PPO-ptx against the reward model (PAPER.md, "PPO against the RM").

Each prompt is a one-step bandit episode: the policy writes a response, the RM scores it
at the last token, and every token pays β·log(π_RL/π_SFT) to the frozen SFT reference.
Advantages come from GAE over those per-token rewards with a value model initialised
from the RM; the policy takes clipped-surrogate steps and, for PPO-ptx, also γ × the
language-modelling loss of pretraining text. Logged every step: RM score and KL side by
side (over-optimisation), entropy, length, losses, clip fraction, and the held-out
pretraining LM loss (the alignment tax, PPO vs PPO-ptx).
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

from training.data import (
    ListDataset,
    cycle_text_batches,
    read_prompts,
    read_texts,
    split_holdout,
    text_batch,
)
from training.losses import (
    AdaptiveKLController,
    entropy,
    gae,
    kl_shaped_rewards,
    masked_mean,
    masked_whiten,
    ppo_clip_loss,
    sft_loss,
    token_logprobs,
    value_clip_loss,
)
from training.models import load_policy, load_reward_model, load_tokenizer, save_model_dir
from training.outputs import Callback, RunLog
from training.sampling import RewardFn, decode, generate_ids, rm_reward_fn


@dataclass
class PPOConfig:
    """PPO-ptx hyperparameters; defaults are the paper's where it gives them."""

    policy_model: str = "models/sft"  # SFT directory: the policy and the frozen reference
    reward_model: str | None = "models/rm"  # RM directory: the reward and the value init
    prompts: str = "data/prompts.jsonl"  # prompts export (train split) for rollouts
    out: str = "models/policy"  # output model directory
    pretrain_data: str | None = None  # pretraining text (PPO-ptx + held-out LM loss)
    kl_coef: float = 0.02  # β: per-token KL penalty to the SFT model (paper 0.02)
    ptx_coef: float = 27.8  # γ: pretraining loss weight (paper 27.8; 0 = plain PPO)
    adaptive_kl: bool = False  # steer β towards kl_target (Ziegler et al.)
    kl_target: float = 6.0  # target KL (nats per episode) for the adaptive controller
    kl_horizon: int = 10_000  # episodes over which β may move ±20 %
    steps: int = 256  # PPO iterations (one rollout batch + its updates each)
    rollout_size: int = 64  # episodes (prompts) per rollout
    minibatch_size: int = 16  # episodes per gradient step
    ppo_epochs: int = 4  # passes over each rollout
    lr: float = 9.65e-6  # policy learning rate
    value_lr: float = 9e-6  # value-model learning rate
    clip: float = 0.2  # ε of the clipped surrogate
    value_clip: float = 0.2  # clip range of the value update
    gamma: float = 1.0  # discount (bandit episode: 1)
    lam: float = 0.95  # GAE λ
    grad_clip: float = 1.0  # max gradient norm
    max_new_tokens: int = 64  # response length cap
    max_prompt_len: int = 256  # prompt tokens kept
    temperature: float = 1.0  # rollout sampling temperature
    ptx_batch_size: int = 8  # pretraining texts per gradient step
    ptx_max_len: int = 256  # tokens per pretraining text
    heldout_texts: int = 32  # pretraining texts held out to measure the alignment tax
    eval_every: int = 1  # steps between held-out LM-loss measurements
    seed: int = 0  # seeds sampling, shuffling and batches
    cpu: bool = False  # run on CPU even if an accelerator is present


def forward_logits(model: Any, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits with position ids from the mask, as generation used them (left padding)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=seq, attention_mask=mask, position_ids=positions).logits


def response_logprobs(
    model: Any, seq: torch.Tensor, mask: torch.Tensor, n_prompt: int, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(response token) and optionally entropy; seq (B, P+T) -> (B, T)."""
    logits = forward_logits(model, seq, mask)[:, n_prompt - 1 : -1]  # position t predicts t+1
    logp = token_logprobs(logits, seq[:, n_prompt:])
    return logp, (entropy(logits) if with_entropy else None)


def response_values(
    value_model: Any, seq: torch.Tensor, mask: torch.Tensor, n_prompt: int
) -> torch.Tensor:
    """V(state before each response token) from the scalar head; (B, P+T) -> (B, T)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = value_model.base_model(
        input_ids=seq, attention_mask=mask, position_ids=positions
    ).last_hidden_state
    return value_model.score(hidden).squeeze(-1)[:, n_prompt - 1 : -1].float()


@torch.no_grad()
def rollout(
    policy: Any,
    ref: Any,
    value_model: Any,
    tok: Any,
    reward: RewardFn,
    prompts: list[str],
    cfg: PPOConfig,
    beta: float,
) -> dict[str, Any]:
    """Sample responses, score them, and compute KL-shaped rewards, advantages, returns."""
    t0 = time.perf_counter()
    gen = generate_ids(
        policy, tok, prompts, cfg.max_new_tokens, cfg.max_prompt_len, temperature=cfg.temperature
    )
    gen_seconds = time.perf_counter() - t0
    n_prompt = gen["prompt_ids"].shape[1]
    seq = torch.cat([gen["prompt_ids"], gen["response_ids"]], 1)  # (B, P+T)
    mask = torch.cat([gen["prompt_mask"], gen["response_mask"]], 1)
    rmask = gen["response_mask"]  # (B, T)
    scores = reward(prompts, decode(tok, gen["response_ids"], rmask)).to(seq.device).float()
    logprobs, ent = response_logprobs(policy, seq, mask, n_prompt, with_entropy=True)
    assert ent is not None
    ref_logprobs, _ = response_logprobs(ref, seq, mask, n_prompt)
    values = response_values(value_model, seq, mask, n_prompt)
    rewards, log_ratio = kl_shaped_rewards(scores, logprobs, ref_logprobs, rmask, beta)
    advantages, returns = gae(rewards, values * rmask, rmask, cfg.gamma, cfg.lam)
    return {
        "seq": seq,
        "mask": mask,
        "rmask": rmask,
        "n_prompt": n_prompt,
        "logprobs": logprobs,
        "values": values,
        "returns": returns,
        "advantages": masked_whiten(advantages, rmask),
        "scores": scores,
        "kl": log_ratio.sum(1),
        "entropy": masked_mean(ent, rmask),
        "gen_seconds": gen_seconds,
    }


def ppo_minibatch_losses(
    policy: Any, value_model: Any, ro: dict[str, Any], idx: torch.Tensor, cfg: PPOConfig
) -> dict[str, torch.Tensor]:
    """Clipped policy loss, clipped value loss and clip fraction on episodes `idx`."""
    seq, mask, rmask, n_prompt = ro["seq"][idx], ro["mask"][idx], ro["rmask"][idx], ro["n_prompt"]
    logprobs, _ = response_logprobs(policy, seq, mask, n_prompt)
    pg_loss, clip_frac = ppo_clip_loss(
        logprobs, ro["logprobs"][idx], ro["advantages"][idx], rmask, cfg.clip
    )
    values = response_values(value_model, seq, mask, n_prompt)
    value_loss = value_clip_loss(
        values, ro["values"][idx], ro["returns"][idx], rmask, cfg.value_clip
    )
    return {"pg_loss": pg_loss, "value_loss": value_loss, "clip_frac": clip_frac}


def lm_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Language-modelling loss of a pretraining batch (−log-likelihood per token)."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sft_loss(logits, batch["labels"])


@torch.no_grad()
def heldout_lm_loss(model: Any, tok: Any, texts: list[str], cfg: PPOConfig) -> float:
    """Mean LM loss on held-out pretraining text: the alignment tax when it rises."""
    model.eval()
    losses = [
        lm_loss(model, text_batch(tok, texts[i : i + 16], cfg.ptx_max_len)).item()
        for i in range(0, len(texts), 16)
    ]
    return sum(losses) / len(losses)


def build_models(cfg: PPOConfig, accelerator: Accelerator) -> tuple[Any, Any, Any, Any]:
    """Tokenizer, policy, frozen reference (both from SFT) and the value model (from the RM)."""
    tok = load_tokenizer(cfg.policy_model)
    tok.padding_side = "left"
    policy = load_policy(cfg.policy_model, tok, dropout=0.0)  # no dropout: exact PPO ratios
    ref = load_policy(cfg.policy_model, tok, dropout=0.0).eval().requires_grad_(False)
    value_model = load_reward_model(cfg.reward_model or cfg.policy_model, tok, dropout=0.0)
    return tok, policy, ref.to(accelerator.device), value_model


def pretraining_texts(cfg: PPOConfig) -> tuple[list[str], list[str]]:
    """(texts for the ptx term, held-out texts for the alignment-tax measurement)."""
    if not cfg.pretrain_data:
        if cfg.ptx_coef > 0:
            raise ValueError("ptx_coef > 0 needs pretrain_data (or set ptx_coef=0 for plain PPO)")
        return [], []
    texts, _ = split_holdout(read_texts(cfg.pretrain_data), 0.0, cfg.seed)  # shuffled
    heldout, train = texts[: cfg.heldout_texts], texts[cfg.heldout_texts :]
    if cfg.ptx_coef > 0 and not train:
        raise ValueError("pretrain_data has no texts left for PPO-ptx after the held-out ones")
    return train, heldout


def train_ppo(
    cfg: PPOConfig, callback: Callback | None = None, reward: RewardFn | None = None
) -> Path:
    """Optimise the policy against the RM (or `reward`, any (prompts, responses) -> (N,))."""
    accelerator = Accelerator(cpu=cfg.cpu)
    set_seed(cfg.seed)
    tok, policy, ref, value_model = build_models(cfg, accelerator)
    if reward is None:
        if not cfg.reward_model:
            raise ValueError("PPO needs a reward model directory or a reward function")
        reward = rm_reward_fn(cfg.reward_model)
    ptx_texts, heldout = pretraining_texts(cfg)
    ptx_batches = (
        cycle_text_batches(tok, ptx_texts, cfg.ptx_batch_size, cfg.ptx_max_len, cfg.seed)
        if cfg.ptx_coef > 0
        else None
    )
    prompts = DataLoader(
        ListDataset(read_prompts(cfg.prompts)),
        batch_size=cfg.rollout_size,
        shuffle=True,
        collate_fn=list,
        drop_last=False,
    )
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
    value_opt = torch.optim.AdamW(value_model.parameters(), lr=cfg.value_lr)
    policy, value_model, opt, value_opt, prompts = accelerator.prepare(
        policy, value_model, opt, value_opt, prompts
    )
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    log = RunLog(
        cfg.out,
        cfg.steps,
        "ppo-ptx" if cfg.ptx_coef > 0 else "ppo",
        callback,
        accelerator.is_main_process,
    )
    unwrapped = accelerator.unwrap_model(policy)
    initial_heldout = heldout_lm_loss(unwrapped, tok, heldout, cfg) if heldout else None

    episodes, gen_seconds, started = 0, 0.0, time.perf_counter()
    prompt_iter = iter(prompts)
    for step in range(1, cfg.steps + 1):
        # rollout: sample, score, KL-shape, GAE (no gradients)
        try:
            batch_prompts = next(prompt_iter)
        except StopIteration:
            prompt_iter = iter(prompts)
            batch_prompts = next(prompt_iter)
        policy.eval()
        ro = rollout(
            unwrapped,
            ref,
            accelerator.unwrap_model(value_model),
            tok,
            reward,
            batch_prompts,
            cfg,
            kl_ctl.value,
        )
        policy.train()

        # update: several clipped epochs over the rollout, ptx batch mixed into each step
        stats: dict[str, list[float]] = {
            "pg_loss": [],
            "value_loss": [],
            "clip_frac": [],
            "ptx_loss": [],
        }
        n = len(batch_prompts)
        for _ in range(cfg.ppo_epochs):
            for idx in torch.randperm(n).split(cfg.minibatch_size):
                losses = ppo_minibatch_losses(policy, value_model, ro, idx, cfg)
                loss = losses["pg_loss"]
                if ptx_batches is not None:
                    ptx = lm_loss(policy, next(ptx_batches))
                    loss = loss + cfg.ptx_coef * ptx  # γ·E[−log π(x)] = −γ·E[log π(x)]
                    stats["ptx_loss"].append(ptx.item())
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                # value model: its own loss and optimiser (separate network, as in the paper)
                accelerator.backward(losses["value_loss"])
                accelerator.clip_grad_norm_(value_model.parameters(), cfg.grad_clip)
                value_opt.step()
                value_opt.zero_grad(set_to_none=True)
                for k in ("pg_loss", "value_loss", "clip_frac"):
                    stats[k].append(losses[k].item())

        # bookkeeping: β, throughput, and the metrics PAPER.md wants side by side
        kl = ro["kl"].mean().item()
        beta = kl_ctl.value
        if cfg.adaptive_kl:
            kl_ctl.update(kl, n)
        episodes, gen_seconds = episodes + n, gen_seconds + ro["gen_seconds"]
        elapsed = time.perf_counter() - started
        metrics = {
            "rm_score": ro["scores"].mean().item(),
            "kl": kl,
            "beta": beta,
            "objective": (ro["scores"] - beta * ro["kl"]).mean().item(),
            "entropy": ro["entropy"].item(),
            "response_len": ro["rmask"].sum(1).float().mean().item(),
            **{k: sum(v) / len(v) for k, v in stats.items() if v},
            "episodes_per_s": episodes / elapsed,
            "gen_time_share": gen_seconds / elapsed,
        }
        if heldout and (step % cfg.eval_every == 0 or step == cfg.steps):
            metrics["heldout_lm_loss"] = heldout_lm_loss(unwrapped, tok, heldout, cfg)
        log.log(step, metrics)

    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        log.close()
        return Path(cfg.out)
    last = log.history[-1]
    final = {k: v for k, v in last.items() if k != "step"}
    final.update(initial_heldout_lm_loss=initial_heldout, episodes=episodes)
    tok.padding_side = "right"
    return save_model_dir(
        cfg.out,
        unwrapped,
        tok,
        log,
        kind="policy",
        parent_model=cfg.policy_model,
        config=cfg,
        metrics=final,
        data_files=[cfg.prompts, cfg.pretrain_data],
        extra={"reward_model": cfg.reward_model},
    )
