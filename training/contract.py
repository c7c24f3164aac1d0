"""The settings of every stage, as data: the contract between the app and `python -m training`.

Standard library only, like `training.records`, so the web process validates a round's config
against these classes (without torch) and hands the child the result as `--config
file.json`; `python -m training` generates its flags from the same classes. Each field
carries its one-line doc in `metadata["doc"]` (the flag's help, the trigger form's hint).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANCELLED_EXIT = 3  # `python -m training --events` stopped by SIGTERM at a step boundary


def knob(default: Any, doc: str) -> Any:
    """A config field: its default and the one line that documents it."""
    return field(default=default, metadata={"doc": doc})


@dataclass
class ScaleOptions:
    """Options every training stage shares: adapters, memory, precision, checkpoints."""

    lora_r: int = knob(0, "LoRA rank (0 = train every weight); the saved model has adapters merged")
    lora_alpha: int = knob(16, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = knob(0.05, "dropout on the LoRA branch")
    lora_targets: str | None = knob(None, "comma list of module names (default: all linear layers)")
    grad_accum: int = knob(
        1, "micro-batches per optimiser step (same effective batch, less memory)")
    gradient_checkpointing: bool = knob(False, "recompute activations in backward (less memory)")
    bf16: bool = knob(False, "bf16 autocast (accelerate mixed precision)")
    checkpoint_every: int = knob(0, "optimiser steps between resumable checkpoints (0 = none)")
    resume: bool = knob(False, "continue from the newest checkpoint beside --out if there is one")
    tracker: str = knob(
        "auto", "auto (TensorBoard if installed, W&B if configured), none, or a list")


@dataclass
class SFTConfig(ScaleOptions):
    """Supervised fine-tuning hyperparameters; defaults are the paper's where it gives them."""

    base_model: str = knob("models/base", "causal-LM directory or hub id to fine-tune")
    train_data: str = knob("data/sft.jsonl", "sft export (prompt/completion or chat messages)")
    out: str = knob("models/sft", "output model directory")
    valid_data: str | None = knob(None, "held-out demonstrations; if None, hold out valid_fraction")
    valid_fraction: float = knob(0.05, "share of train_data held out when valid_data is None")
    reward_model: str | None = knob(None, "RM dir: keep the epoch whose samples score best")
    select_by: str = knob(
        "auto", "reward | val_loss | last; auto = reward if an RM is given, else last")
    epochs: int = knob(16, "paper: 16 (more epochs keep raising RM score despite val-loss overfit)")
    batch_size: int = knob(32, "demonstrations per optimiser step")
    lr: float = knob(1e-5, "peak learning rate")
    min_lr_ratio: float = knob(0.0, "cosine decays to this share of lr")
    warmup_ratio: float = knob(0.03, "share of steps spent warming up linearly")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    dropout: float | None = knob(
        0.2, "residual dropout (paper 0.2; attention/embedding off; None keeps)")
    grad_clip: float = knob(1.0, "max gradient norm")
    max_len: int = knob(512, "tokens per prompt + response")
    eval_prompts: int = knob(32, "validation prompts sampled per epoch for reward selection")
    eval_max_new_tokens: int = knob(64, "response length when sampling for selection")
    seed: int = knob(0, "seeds shuffling, dropout and sampling")
    cpu: bool = knob(False, "run on CPU even if an accelerator is present")


@dataclass
class RewardConfig(ScaleOptions):
    """Reward-model hyperparameters; defaults are the paper's."""

    base_model: str = knob("models/sft", "SFT model directory or any causal-LM dir / hub id")
    train_data: str = knob("data/rankings.jsonl", "grouped, rankings or comparisons export")
    out: str = knob("models/rm", "output model directory")
    valid_data: str | None = knob(None, "held-out rankings; if None, hold out valid_fraction")
    valid_fraction: float = knob(0.05, "share of train_data held out when valid_data is None")
    demonstrations: str | None = knob(None, "sft export that should score 0 on average")
    epochs: int = knob(1, "paper: a single epoch (the RM overfits after one pass)")
    prompts_per_step: int = knob(64, "ranked prompts per optimiser step (each brings all K)")
    lr: float = knob(9e-6, "peak learning rate (paper, 6B RM)")
    min_lr_ratio: float = knob(0.1, "cosine decay ends at this share of lr")
    warmup_steps: int = knob(0, "linear warm-up steps")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    grad_clip: float = knob(1.0, "max gradient norm")
    max_len: int = knob(512, "tokens per prompt + response")
    dropout: float | None = knob(0.0, "dropout while training the RM (0 = off, as TRL; None keeps)")
    pooling: str = knob(
        "last", "score at the last token (last, as transformers and TRL) or the mean over tokens")
    seed: int = knob(0, "seeds shuffling and the new head")
    cpu: bool = knob(False, "run on CPU even if an accelerator is present")


@dataclass
class PPOConfig(ScaleOptions):
    """PPO-ptx hyperparameters; defaults are the paper's where it gives them."""

    policy_model: str = knob("models/sft", "SFT directory: the policy and the frozen reference")
    reward_model: str | None = knob("models/rm", "RM directory: the reward and the value init")
    prompts: str = knob("data/prompts.jsonl", "prompts export (train split) for rollouts")
    prompt_split: str = knob("train", "rows of --prompts used for rollouts (all = ignore split)")
    eval_prompts: str | None = knob(
        None, "prompts to select the kept step on (default: valid split)")
    eval_size: int = knob(64, "evaluation prompts used (one sampled answer each)")
    test_size: int = knob(64, "test-split prompts of --prompts the kept policy is measured on")
    select_by: str = knob("auto", "objective | reward | last; auto = objective with eval prompts")
    out: str = knob("models/policy", "output model directory")
    pretrain_data: str | None = knob(None, "pretraining text (PPO-ptx + held-out LM loss)")
    kl_coef: float = knob(0.02, "β: per-token KL penalty to the SFT model (paper 0.02)")
    ptx_coef: float = knob(27.8, "γ: pretraining loss weight (paper 27.8; 0 = plain PPO)")
    ptx_mix: float = knob(8.0, "pretraining sequences per RL episode in each step (paper 8)")
    adaptive_kl: bool = knob(False, "steer β towards kl_target (Ziegler et al.)")
    kl_target: float = knob(6.0, "target KL (nats per episode) for the adaptive controller")
    kl_horizon: int = knob(10_000, "episodes over which β may move ±20 %")
    steps: int = knob(256, "PPO iterations (one rollout batch + its updates each)")
    rollout_size: int = knob(64, "episodes (prompts) per rollout")
    minibatch_size: int = knob(16, "episodes per gradient step")
    ppo_epochs: int = knob(4, "passes over each rollout")
    lr: float = knob(9.65e-6, "policy learning rate")
    value_lr: float = knob(9e-6, "value-model learning rate")
    clip: float = knob(0.2, "ε of the clipped surrogate")
    value_clip: float = knob(0.2, "clip range of the value update")
    gamma: float = knob(1.0, "discount (bandit episode: 1)")
    lam: float = knob(0.95, "GAE λ")
    grad_clip: float = knob(1.0, "max gradient norm")
    max_new_tokens: int = knob(64, "response length cap")
    max_prompt_len: int = knob(256, "prompt tokens kept")
    temperature: float = knob(1.0, "rollout sampling temperature (log-probs use the same)")
    rollout_backend: str = knob(
        "hf", "hf (transformers generate), vllm (engine on the same GPU) or auto (vllm if usable)")
    vllm_gpu_memory: float = knob(0.3, "share of GPU memory the vLLM rollout engine reserves")
    missing_eos_penalty: float | None = knob(
        None, "subtracted from the score of an unfinished answer")
    ptx_batch_size: int | None = knob(None, "pretraining texts per gradient step (None: ptx_mix x)")
    ptx_max_len: int = knob(256, "tokens per pretraining text")
    heldout_texts: int = knob(32, "pretraining texts held out to measure the alignment tax")
    eval_every: int = knob(1, "steps between evaluations (held-out LM loss, kept-step selection)")
    seed: int = knob(0, "seeds sampling, shuffling and batches")
    cpu: bool = knob(False, "run on CPU even if an accelerator is present")


@dataclass
class DPOConfig(ScaleOptions):
    """DPO hyperparameters (TRL's defaults where the paper gives none)."""

    policy_model: str = knob("models/sft", "SFT directory: the policy and the frozen reference")
    train_data: str = knob("data/rankings.jsonl", "grouped, rankings or comparisons export")
    out: str = knob("models/policy", "output model directory")
    valid_data: str | None = knob(None, "held-out rankings; if None, hold out valid_fraction")
    valid_fraction: float = knob(
        0.05, "share of train_data held out (by prompt) without valid_data")
    beta: float = knob(0.1, "β: strength of the implicit KL to the reference (TRL default 0.1)")
    epochs: int = knob(1, "passes over the rankings")
    prompts_per_step: int = knob(16, "ranked prompts per optimiser step (each brings all K)")
    lr: float = knob(1e-6, "peak learning rate (TRL default)")
    min_lr_ratio: float = knob(0.1, "cosine decays to this share of lr")
    warmup_steps: int = knob(0, "linear warm-up steps")
    grad_clip: float = knob(1.0, "max gradient norm")
    max_len: int = knob(512, "tokens per prompt + response")
    seed: int = knob(0, "seeds shuffling")
    cpu: bool = knob(False, "run on CPU even if an accelerator is present")


@dataclass
class SampleConfig:
    """Candidate generation (and best-of-N) settings."""

    model: str = knob("models/policy", "policy directory or hub id to sample from")
    prompts: str = knob("data/prompts.jsonl", "prompts export (or any JSONL with prompt/text)")
    out: str = knob("data/candidates.jsonl", "candidate import JSONL to write")
    k: int = knob(4, "candidates per prompt (the app makes rank tasks for 4..9)")
    reward_model: str | None = knob(None, "RM directory, required for best-of-N")
    n: int = knob(16, "best-of-N: samples scored per prompt, the best one kept")
    max_new_tokens: int = knob(64, "response length cap in tokens")
    max_prompt_len: int = knob(256, "prompt tokens kept (the end of longer prompts)")
    temperature: float = knob(1.0, "sampling temperature")
    top_p: float = knob(1.0, "nucleus sampling threshold")
    batch_size: int = knob(16, "prompts per generate call")
    model_name: str | None = knob(None, '"model" label of each candidate (default: dir name)')
    seed: int = knob(0, "sampling seed")
    backend: str = knob(
        "hf", "hf (transformers generate), vllm (where installed) or auto (vllm if usable)")


@dataclass
class ScoreConfig:
    """Reward-model scores of given answers (a campaign's pairs, read beside people's)."""

    reward_model: str = knob("models/rm", "RM directory")
    data: str = knob("data/candidates.jsonl", "candidate import JSONL: a prompt and its answers")
    out: str = knob("data/scored.jsonl", "the same rows, each candidate with its RM score")
    max_len: int = knob(512, "tokens per prompt + answer")
    batch_size: int = knob(32, "answers per forward pass")


@dataclass
class TinyConfig:
    """Size of the tiny base model and its warm-up on the toy English."""

    n_layer: int = knob(2, "transformer blocks")
    n_embd: int = knob(128, "hidden size")
    n_head: int = knob(4, "attention heads")
    n_positions: int = knob(512, "longest sequence in tokens")
    tokenizer: str = knob("bpe", "bpe (trained on the toy English) or byte")
    vocab_size: int = knob(1024, "BPE vocabulary size (the toy English needs about 800)")
    pretrain_steps: int = knob(400, "warm-up steps on the toy English (0 = random weights)")
    pretrain_batch: int = knob(16, "sequences per warm-up step")
    pretrain_len: int = knob(96, "tokens per warm-up sequence")
    lr: float = knob(3e-3, "warm-up peak learning rate (linear warm-up, then linear decay)")
    seed: int = knob(0, "seeds weights, corpus and warm-up order")

@dataclass
class SmallLlamaConfig:
    """Size of the small Llama-style base model (BPE tokenizer, chat template) and its warm-up."""

    hidden_size: int = knob(64, "hidden size")
    n_layer: int = knob(2, "decoder layers")
    n_head: int = knob(4, "attention heads")
    n_kv_head: int = knob(2, "key/value heads (grouped-query attention when below n_head)")
    intermediate_size: int = knob(128, "SwiGLU MLP width")
    max_positions: int = knob(512, "longest sequence in tokens (RoPE)")
    vocab_size: int = knob(1024, "BPE vocabulary size, special tokens included")
    pad_token: bool = knob(True, "give the tokenizer its own pad token (Llama's has none)")
    pretrain_steps: int = knob(200, "warm-up steps on the toy English (0 = random weights)")
    pretrain_batch: int = knob(16, "sequences per warm-up step")
    pretrain_len: int = knob(96, "tokens per warm-up sequence")
    lr: float = knob(3e-3, "warm-up peak learning rate (linear warm-up, then linear decay)")
    seed: int = knob(0, "seeds weights, corpus and warm-up order")


# The stages a round runs, by the name the app and `python -m training` give them.
STAGE_CONFIGS: dict[str, type] = {"sft": SFTConfig, "rm": RewardConfig, "ppo": PPOConfig,
                                  "dpo": DPOConfig}
PLAIN_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float),
                                            "bool": (bool,)}


def doc(f: dataclasses.Field[Any]) -> str:
    """A field's one-line doc."""
    return str(f.metadata.get("doc", ""))


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, PLAIN_TYPES.get(kind, ())) and not isinstance(value, bool)


def check_value(cls: type, name: str, value: Any) -> Any:
    """`value` as field `name` of `cls` takes it (an int for a float becomes a float);
    ValueError with why when it cannot."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    if name not in known:
        raise ValueError(f"{cls.__name__} has no field {name!r}")
    kinds = [part.strip() for part in str(known[name].type).split("|")]
    if value is None and "None" in kinds:
        return None
    kind = next((k for k in kinds if _fits(k, value)), None)
    if kind is None:
        raise ValueError(f"{name} must be {known[name].type}, not {value!r}")
    return float(value) if kind == "float" else value


def read_config(cls: type, path: str | Path) -> dict[str, Any]:
    """The `{field: value}` object of a --config file, each value checked against `cls`."""
    values = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise ValueError("the file must hold one JSON object of {field: value}")
    return {name: check_value(cls, name, value) for name, value in values.items()}


def write_config(values: dict[str, Any], path: str | Path) -> Path:
    """Write a stage's `{field: value}` for `python -m training STAGE --config PATH`."""
    path = Path(path)
    path.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path
