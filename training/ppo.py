"""Stage 3: PPO / PPO-ptx against the reward model (PAPER.md, "PPO against the RM").

Each prompt is a one-step bandit episode: the policy writes a response, the RM scores it
at the last token, and every token pays β·log(π_RL/π_SFT) to the frozen SFT reference.
Advantages come from GAE over those per-token rewards with a value model initialised
from the RM; the policy takes clipped-surrogate steps and, for PPO-ptx, also γ × the
language-modelling loss of pretraining text.

Normalisation of γ (PAPER.md's objective is per episode): the policy loss of a minibatch
is the clipped surrogate summed over each episode's response tokens and averaged over
episodes; the pretraining term is γ × the mean per-token negative log-likelihood of
`ptx_mix` pretraining sequences per RL episode (the paper's 8:1 mix). So γ weighs one
pretraining token's log-likelihood against one whole episode's return, as in the paper,
and γ = 27.8 keeps the RL signal (a token-mean surrogate plus 27.8 × a token-mean LM
loss swamps it by the response length). Logged every step: RM score and KL side by
side (over-optimisation), entropy, length, losses, clip fraction, and the held-out
pretraining LM loss (the alignment tax, PPO vs PPO-ptx).

Responses are sampled by transformers' `generate` on the policy, or by a vLLM engine on the
same GPU that is given the policy's weights after every update (`rollout_backend`,
training/rollouts.py); everything after sampling, the log-probs included, is the same code.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from training.contract import PPOConfig
from training.data import (
    ListDataset,
    cycle_text_batches,
    read_prompts,
    read_rows,
    read_texts,
    split_holdout,
    text_batch,
)
from training.loop import Checkpoints, TrackedRunLog, make_accelerator, micro_batches
from training.losses import (
    AdaptiveKLController,
    entropy,
    episode_policy_loss,
    gae,
    kl_estimate,
    kl_shaped_rewards,
    masked_mean,
    masked_whiten,
    ppo_clip_loss,
    sft_loss,
    token_logprobs,
    value_clip_loss,
)
from training.models import (
    load_policy,
    load_reward_model,
    load_tokenizer,
    merged,
    prepare_model,
    restore_dropout,
    save_model_dir,
    token_scores,
)
from training.outputs import Callback
from training.rollouts import HFRollouts, Rollouts, choose_backend, make_rollouts
from training.sampling import RewardFn, decode, generate_ids, rm_reward_fn
from training.signals import output_signals

clock = time.perf_counter  # the one clock for throughput figures (tests can replace it)


def forward_logits(model: Any, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits with position ids from the mask, as generation used them (left padding)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=seq, attention_mask=mask, position_ids=positions).logits


def response_logprobs(
    model: Any,
    seq: torch.Tensor,
    mask: torch.Tensor,
    n_prompt: int,
    with_entropy: bool = False,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(response token) and optionally entropy; seq (B, P+T) -> (B, T).

    Logits are divided by the sampling temperature, so the ratio, the KL and the
    entropy are those of the distribution the responses were drawn from.
    """
    logits = forward_logits(model, seq, mask)[:, n_prompt - 1 : -1]  # position t predicts t+1
    if temperature != 1.0:
        logits = logits / temperature
    logp = token_logprobs(logits, seq[:, n_prompt:])
    return logp, (entropy(logits) if with_entropy else None)


def reference_logprobs(
    ref: Any, policy: Any, seq: torch.Tensor, mask: torch.Tensor, n_prompt: int, temp: float
) -> torch.Tensor:
    """log π_SFT of the responses: the frozen copy, or the policy with its LoRA disabled."""
    if ref is None:
        with policy.disable_adapter():
            return response_logprobs(policy, seq, mask, n_prompt, temperature=temp)[0]
    return response_logprobs(ref, seq, mask, n_prompt, temperature=temp)[0]


def response_values(
    value_model: Any, seq: torch.Tensor, mask: torch.Tensor, n_prompt: int
) -> torch.Tensor:
    """V(state before each response token) from the scalar head; (B, P+T) -> (B, T)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    values = token_scores(value_model, input_ids=seq, attention_mask=mask, position_ids=positions)
    return values[:, n_prompt - 1 : -1].float()


def finished(response_ids: torch.Tensor, rmask: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Whether each response ended with an eos token before the length cap; (B,) bool."""
    return ((response_ids == eos_id) & rmask.bool()).any(1)


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
    engine: Rollouts | None = None,
) -> dict[str, Any]:
    """Sample responses (with `engine`, else the policy's `generate`), score them, and
    compute KL-shaped rewards, advantages, returns."""
    t0 = time.perf_counter()
    gen = (engine or HFRollouts()).generate(policy, tok, prompts, cfg)
    gen_seconds = time.perf_counter() - t0
    n_prompt = gen["prompt_ids"].shape[1]
    seq = torch.cat([gen["prompt_ids"], gen["response_ids"]], 1)  # (B, P+T)
    mask = torch.cat([gen["prompt_mask"], gen["response_mask"]], 1)
    rmask = gen["response_mask"]  # (B, T)
    rm_scores = reward(prompts, decode(tok, gen["response_ids"], rmask)).to(seq.device).float()
    done = finished(gen["response_ids"], rmask, tok.eos_token_id)
    scores = rm_scores
    if cfg.missing_eos_penalty is not None:  # TRL's: an answer cut at the cap is not finished
        scores = rm_scores - cfg.missing_eos_penalty * (~done).float()
    temp = cfg.temperature
    logprobs, ent = response_logprobs(
        policy, seq, mask, n_prompt, with_entropy=True, temperature=temp
    )
    assert ent is not None
    ref_logprobs = reference_logprobs(ref, policy, seq, mask, n_prompt, temp)
    values = response_values(value_model, seq, mask, n_prompt)
    rewards, _ = kl_shaped_rewards(scores, logprobs, ref_logprobs, rmask, beta)
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
        "rm_scores": rm_scores,
        "no_eos": (~done).float().mean(),
        # The penalty above is the per-token log-ratio (PAPER.md's R); what is reported and
        # steers β is an estimator of the same KL that cannot go negative on a small batch.
        "kl": kl_estimate(logprobs, ref_logprobs, rmask),
        "entropy": masked_mean(ent, rmask),
        "gen_seconds": gen_seconds,
    }


def ppo_minibatch_losses(
    policy: Any, value_model: Any, ro: dict[str, Any], idx: torch.Tensor, cfg: PPOConfig
) -> dict[str, torch.Tensor]:
    """Clipped policy loss, clipped value loss and clip fraction on episodes `idx`."""
    seq, mask, rmask, n_prompt = ro["seq"][idx], ro["mask"][idx], ro["rmask"][idx], ro["n_prompt"]
    logprobs, _ = response_logprobs(policy, seq, mask, n_prompt, temperature=cfg.temperature)
    pg_loss, clip_frac = ppo_clip_loss(
        logprobs, ro["logprobs"][idx], ro["advantages"][idx], rmask, cfg.clip
    )
    values = response_values(value_model, seq, mask, n_prompt)
    value_loss = value_clip_loss(
        values, ro["values"][idx], ro["returns"][idx], rmask, cfg.value_clip
    )
    return {
        "pg_loss": pg_loss,  # token mean, logged
        "pg_episode_loss": episode_policy_loss(pg_loss, rmask),  # per episode: the optimised one
        "value_loss": value_loss,
        "clip_frac": clip_frac,
        "tokens": rmask.sum(),
    }


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
    """Tokenizer, policy, frozen reference (both from SFT) and the value model (from the RM).

    With LoRA the reference is the policy with its adapters disabled (no second copy),
    and the value model gets adapters of its own on the RM.
    """
    tok = load_tokenizer(cfg.policy_model)
    tok.padding_side = "left"
    policy = load_policy(cfg.policy_model, tok, dropout=0.0)  # no dropout: exact PPO ratios
    policy = prepare_model(policy, cfg, "CAUSAL_LM")
    ref = None
    if cfg.lora_r <= 0:
        ref = load_policy(cfg.policy_model, tok, dropout=0.0).eval().requires_grad_(False)
        ref = ref.to(accelerator.device)
    value_model = load_reward_model(cfg.reward_model or cfg.policy_model, tok, dropout=0.0)
    value_model = prepare_model(value_model, cfg, "SEQ_CLS")
    return tok, policy, ref, value_model


def evaluation_prompts(cfg: PPOConfig) -> list[str]:
    """Prompts the kept step is chosen on: --eval-prompts, else the valid split of --prompts."""
    if cfg.eval_prompts:
        return read_prompts(cfg.eval_prompts, None)[: cfg.eval_size]
    rows = read_rows(cfg.prompts)
    valid = [r for r in rows if r.get("split") == "valid"]
    return [r["prompt"] if "prompt" in r else r["text"] for r in valid][: cfg.eval_size]


def test_prompts(cfg: PPOConfig) -> list[str]:
    """The test split of --prompts (at most test_size): where the kept policy's RM score and
    KL are measured once at the end, never used to train or to choose a step."""
    if cfg.test_size <= 0:
        return []
    rows = [r for r in read_rows(cfg.prompts) if r.get("split") == "test"]
    return [r["prompt"] if "prompt" in r else r["text"] for r in rows][: cfg.test_size]


def _sample_scored(
    model: Any, tok: Any, reward: RewardFn, prompts: list[str], cfg: PPOConfig
) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, float]]:
    """One answer per prompt from `model` with the evaluation seed: (generation, RM scores,
    output signals). The RNG is restored after, so evaluating does not change training."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        gen = generate_ids(
            model, tok, prompts, cfg.max_new_tokens, cfg.max_prompt_len, cfg.temperature
        )
    rmask = gen["response_mask"]
    scores = reward(prompts, decode(tok, gen["response_ids"], rmask)).float()
    answers = [row[m.bool()].tolist() for row, m in zip(gen["response_ids"], rmask, strict=True)]
    signals = output_signals(answers, eos_id=tok.eos_token_id, max_new_tokens=cfg.max_new_tokens)
    return gen, scores, signals


@torch.no_grad()
def evaluate_policy(
    policy: Any,
    ref: Any,
    tok: Any,
    reward: RewardFn,
    prompts: list[str],
    cfg: PPOConfig,
    beta: float,
) -> dict[str, float]:
    """One sampled answer per evaluation prompt: mean RM score, KL, their objective, and
    what the answers look like (length, cut answers, repetition: training/signals.py)."""
    gen, scores, signals = _sample_scored(policy, tok, reward, prompts, cfg)
    n_prompt = gen["prompt_ids"].shape[1]
    seq = torch.cat([gen["prompt_ids"], gen["response_ids"]], 1)
    mask = torch.cat([gen["prompt_mask"], gen["response_mask"]], 1)
    rmask = gen["response_mask"]
    scores = scores.to(seq.device)
    logp, _ = response_logprobs(policy, seq, mask, n_prompt, temperature=cfg.temperature)
    ref_logp = reference_logprobs(ref, policy, seq, mask, n_prompt, cfg.temperature)
    kl = kl_estimate(logp, ref_logp, rmask)
    return {
        "eval_rm_score": scores.mean().item(),
        "eval_kl": kl.mean().item(),
        "eval_objective": (scores - beta * kl).mean().item(),
        **{f"eval_{k}": v for k, v in signals.items()},
    }


@torch.no_grad()
def evaluate_reference(
    policy: Any, ref: Any, tok: Any, reward: RewardFn, prompts: list[str], cfg: PPOConfig
) -> dict[str, float]:
    """The SFT model's RM score and output signals on the same prompts, sampled the same
    way: what the policy's figures are compared with (a jump in length or repetition)."""
    if ref is not None:
        _, scores, signals = _sample_scored(ref, tok, reward, prompts, cfg)
    else:  # LoRA: SFT is the policy with its adapters off
        with policy.disable_adapter():
            _, scores, signals = _sample_scored(policy, tok, reward, prompts, cfg)
    return {"rm_score": scores.mean().item(), **signals}


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


def selection_rule(cfg: PPOConfig, have_eval: bool) -> str:
    """Resolve select_by='auto': the evaluation objective when there are eval prompts."""
    if cfg.select_by == "auto":
        return "objective" if have_eval else "last"
    if cfg.select_by in ("objective", "reward") and not have_eval:
        raise ValueError(f"select_by={cfg.select_by!r} needs evaluation prompts")
    if cfg.select_by not in ("objective", "reward", "last"):
        raise ValueError("select_by must be auto, objective, reward or last")
    return cfg.select_by


def trainable_state(model: Any, lora: bool) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights training changes (only the adapters with LoRA)."""
    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in model.state_dict().items()
        if not lora or "lora_" in k
    }


def train_ppo(
    cfg: PPOConfig, callback: Callback | None = None, reward: RewardFn | None = None
) -> Path:
    """Optimise the policy against the RM (or `reward`, any (prompts, responses) -> (N,))."""
    backend, why = choose_backend(cfg)  # before anything loads: a named engine that can't run
    accelerator = make_accelerator(cfg, "ppo")
    if accelerator.is_main_process:
        engine_name = "vLLM" if backend == "vllm" else "transformers generate"
        print(f"Rollouts through {engine_name} ({why})", flush=True)
    set_seed(cfg.seed)
    tok, policy, ref, value_model = build_models(cfg, accelerator)
    if reward is None:
        if not cfg.reward_model:
            raise ValueError("PPO needs a reward model directory or a reward function")
        reward = rm_reward_fn(cfg.reward_model)
    ptx_texts, heldout = pretraining_texts(cfg)
    ptx_size = cfg.ptx_batch_size or max(1, round(cfg.ptx_mix * cfg.minibatch_size))
    ptx_batches = (
        cycle_text_batches(tok, ptx_texts, ptx_size, cfg.ptx_max_len, cfg.seed)
        if cfg.ptx_coef > 0
        else None
    )
    train_prompts = read_prompts(cfg.prompts, cfg.prompt_split)
    eval_prompts = evaluation_prompts(cfg)
    select = selection_rule(cfg, bool(eval_prompts))
    order = torch.Generator()  # reseeded per pass over the prompts: resumable
    prompts = DataLoader(
        ListDataset(train_prompts),
        batch_size=cfg.rollout_size,
        shuffle=True,
        collate_fn=list,
        drop_last=False,
        generator=order,
    )
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    value_opt = torch.optim.AdamW(
        [p for p in value_model.parameters() if p.requires_grad], lr=cfg.value_lr
    )
    policy, value_model, opt, value_opt, prompts = accelerator.prepare(
        policy, value_model, opt, value_opt, prompts
    )
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    unwrapped = accelerator.unwrap_model(policy)
    engine = make_rollouts(backend, cfg, accelerator)  # after the models: vLLM takes a share
    lora = cfg.lora_r > 0
    checkpoints = Checkpoints(cfg.out, cfg.checkpoint_every, accelerator)
    first_step, episodes, train_seconds, gen_seconds = 1, 0, 0.0, 0.0
    best: dict[str, Any] = {"score": None, "step": None, "state": None}
    history: list[dict[str, Any]] = []
    initial_heldout = None
    resumed = checkpoints.load() if cfg.resume else None
    if resumed is not None:
        state, best_state = resumed
        first_step, episodes = state["step"] + 1, state["episodes"]
        train_seconds, gen_seconds = state["train_seconds"], state["gen_seconds"]
        kl_ctl.value, history = state["beta"], state["history"]
        initial_heldout = state["initial_heldout_lm_loss"]
        best = {"score": state["best_score"], "step": state["best_step"], "state": best_state}
    elif heldout:
        initial_heldout = heldout_lm_loss(unwrapped, tok, heldout, cfg)
    log = TrackedRunLog(
        cfg.out,
        cfg.steps,
        "ppo-ptx" if cfg.ptx_coef > 0 else "ppo",
        callback,
        accelerator,
        history,
    )

    for step in range(first_step, cfg.steps + 1):
        started = clock()
        # rollout: sample, score, KL-shape, GAE (no gradients); prompts reshuffled per pass
        per_pass = max(1, len(prompts))
        if step == first_step or (step - 1) % per_pass == 0:
            order.manual_seed(cfg.seed + (step - 1) // per_pass)
            prompt_iter = iter(prompts)
            for _ in range((step - 1) % per_pass):  # resumed mid-pass: skip what was done
                next(prompt_iter)
        batch_prompts = next(prompt_iter)
        policy.eval()
        synced = time.perf_counter()
        if step > first_step or resumed is not None:  # sample from what the last update left
            engine.sync(unwrapped)
        sync_seconds = time.perf_counter() - synced
        ro = rollout(
            unwrapped,
            ref,
            accelerator.unwrap_model(value_model),
            tok,
            reward,
            batch_prompts,
            cfg,
            kl_ctl.value,
            engine,
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
                ptx = next(ptx_batches) if ptx_batches is not None else None
                ptx_tokens = (ptx["labels"][:, 1:] != -100).sum() if ptx is not None else None
                parts = micro_batches(len(idx), cfg.grad_accum)
                ptx_parts = micro_batches(len(ptx["input_ids"]), len(parts)) if ptx else []
                for j, part in enumerate(parts):
                    last = j == len(parts) - 1
                    ctx = accelerator.no_sync(policy) if not last else contextlib.nullcontext()
                    with ctx:
                        losses = ppo_minibatch_losses(policy, value_model, ro, idx[part], cfg)
                        # the paper's per-episode objective: Σ over the episode's tokens
                        loss = losses["pg_episode_loss"] * (len(idx[part]) / len(idx))
                        if ptx is not None and ptx_tokens is not None and j < len(ptx_parts):
                            sub = {k: v[ptx_parts[j]] for k, v in ptx.items()}
                            share = (sub["labels"][:, 1:] != -100).sum() / ptx_tokens
                            ptx_loss = lm_loss(policy, sub)
                            # γ·E[−log π(x)] per pretraining token, over ptx_mix × episodes
                            loss = loss + cfg.ptx_coef * ptx_loss * share
                            stats["ptx_loss"].append(ptx_loss.item())
                        accelerator.backward(loss)
                        # value model: its own loss and optimiser (separate network)
                        accelerator.backward(losses["value_loss"] * (len(idx[part]) / len(idx)))
                    for k in ("pg_loss", "value_loss", "clip_frac"):
                        stats[k].append(losses[k].item())
                accelerator.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                accelerator.clip_grad_norm_(value_model.parameters(), cfg.grad_clip)
                value_opt.step()
                value_opt.zero_grad(set_to_none=True)

        # bookkeeping: β, throughput, and the metrics PAPER.md wants side by side
        kl = ro["kl"].mean().item()
        beta = kl_ctl.value
        if cfg.adaptive_kl:
            kl_ctl.update(kl, n)
        # pushing weights to the engine is part of what its generation costs
        episodes, gen_seconds = episodes + n, gen_seconds + ro["gen_seconds"] + sync_seconds
        train_seconds += clock() - started  # evaluation below is not training time
        metrics = {
            "rm_score": ro["rm_scores"].mean().item(),
            "kl": kl,
            "beta": beta,
            "objective": (ro["scores"] - beta * ro["kl"]).mean().item(),
            "entropy": ro["entropy"].item(),
            "response_len": ro["rmask"].sum(1).float().mean().item(),
            "no_eos_share": ro["no_eos"].item(),
            **{k: sum(v) / len(v) for k, v in stats.items() if v},
            "episodes_per_s": episodes / max(train_seconds, 1e-9),
            "gen_time_share": gen_seconds / max(train_seconds, 1e-9),
        }
        if step % cfg.eval_every == 0 or step == cfg.steps:
            policy.eval()
            if heldout:
                metrics["heldout_lm_loss"] = heldout_lm_loss(unwrapped, tok, heldout, cfg)
            if eval_prompts:
                metrics.update(
                    evaluate_policy(unwrapped, ref, tok, reward, eval_prompts, cfg, beta)
                )
            policy.train()
            score = {
                "objective": metrics.get("eval_objective"),
                "reward": metrics.get("eval_rm_score"),
                "last": step,
            }[select]
            if best["score"] is None or score >= best["score"]:
                keep = None if select == "last" else trainable_state(unwrapped, lora)
                best = {"score": score, "step": step, "state": keep}
        log.log(step, metrics)
        if checkpoints.due(step) and step < cfg.steps:
            checkpoints.save(
                step,
                {
                    "episodes": episodes,
                    "train_seconds": train_seconds,
                    "gen_seconds": gen_seconds,
                    "beta": kl_ctl.value,
                    "history": log.history,
                    "initial_heldout_lm_loss": initial_heldout,
                    "best_score": best["score"],
                    "best_step": best["step"],
                },
                best["state"],
            )

    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        log.close()
        return Path(cfg.out)
    if best["state"] is not None:  # the selected step's weights
        unwrapped.load_state_dict(best["state"], strict=not lora)
    kept = next(r for r in log.history if r["step"] == best["step"])
    final = {k: v for k, v in kept.items() if k != "step"}
    held_back = test_prompts(cfg)
    if held_back:  # the automatic signals an evaluation campaign shows beside its win rates
        policy.eval()
        measured = evaluate_policy(unwrapped, ref, tok, reward, held_back, cfg, kl_ctl.value)
        final.update({f"test_{k.removeprefix('eval_')}": v for k, v in measured.items()},
                     test_prompts=len(held_back))
        # SFT on the same prompts: the watch reads a jump in length or repetition from these
        sft = evaluate_reference(unwrapped, ref, tok, reward, held_back, cfg)
        final.update({f"sft_test_{k}": v for k, v in sft.items()})
    final.update(
        initial_heldout_lm_loss=initial_heldout,
        episodes=episodes,
        selected_step=best["step"],
        selected_by=select,
        train_seconds=train_seconds,
        trainable_params=trainable,
    )
    tok.padding_side = "right"
    model = merged(unwrapped)
    restore_dropout(model, cfg.policy_model)
    out = save_model_dir(
        cfg.out,
        model,
        tok,
        log,
        kind="policy",
        parent_model=cfg.policy_model,
        config=cfg,
        metrics=final,
        data_files=[cfg.prompts, cfg.pretrain_data],
        extra={"reward_model": cfg.reward_model, "ptx_batch_size": ptx_size,
               "rollout_backend": backend},
    )
    checkpoints.remove()
    return out
