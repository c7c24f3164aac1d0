"""Loading and saving the three kinds of model: policy (causal LM), reward, value.

Any Hugging Face causal-LM directory or hub id works; the reward model is the same
network with `AutoModelForSequenceClassification(num_labels=1)`'s scalar `score` head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from training.data import ensure_chat_template
from training.outputs import RunLog, atomic_dir, write_manifest

SCORE_OFFSET = "score_offset"  # config field of a reward model's offset (see fold_score_offset)
# Config field of how a reward model reads its score (see rm_scores): "last" or "mean".
SCORE_POOLING = "score_pooling"
POOLINGS = ("last", "mean")
FINAL_NORMS = ("ln_f", "norm", "final_layer_norm", "final_layernorm")
# Config fields that drop out the residual stream (the paper's "residual dropout"), and the
# ones that drop out attention weights or embeddings, across common architectures.
RESIDUAL_DROPOUT = ("resid_pdrop", "hidden_dropout", "hidden_dropout_prob", "dropout")
OTHER_DROPOUT = (
    "embd_pdrop",
    "attn_pdrop",
    "attention_dropout",
    "attention_probs_dropout_prob",
    "embed_dropout",
    "classifier_dropout",
    "summary_first_dropout",
)


def check_causal_lm(name: str | Path) -> None:
    """A clear ValueError unless `name` is a model directory (or id) of a causal LM
    architecture, checked on its config before any weights load or anything is written."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{name} is not a model directory or id: {exc}") from exc
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"{name} is a {config.model_type!r} model, not a causal language "
                         "model (AutoModelForCausalLM has no class for it)")


def load_tokenizer(name: str | Path) -> Any:
    """The model's tokenizer with a pad token (eos if it has none), right padding, and a
    chat template (the plain layout if the model has none: see training.data)."""
    check_causal_lm(name)
    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{name} has no tokenizer that loads: {exc}") from exc
    if tok.eos_token is None:  # answers end with eos in every stage; without one, never
        raise ValueError(f"the tokenizer of {name} has no eos token: set eos_token in its "
                         "tokenizer_config.json (the token that ends an answer)")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    ensure_chat_template(tok)
    return tok


def load_policy(
    name: str | Path, tok: Any, dropout: float | None = None, dtype: Any = None
) -> PreTrainedModel:
    """A causal LM; `dropout` sets residual dropout and turns the other dropouts off."""
    kwargs: dict[str, Any] = dropout_kwargs(name, dropout)
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    model.config.pad_token_id = tok.pad_token_id
    return model


def load_reward_model(
    name: str | Path, tok: Any, dropout: float | None = None, dtype: Any = None
) -> PreTrainedModel:
    """The causal LM with its unembedding replaced by a scalar head (or an existing RM)."""
    kwargs: dict[str, Any] = dropout_kwargs(name, dropout, residual_only=False)
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=1, **kwargs)
    model.config.pad_token_id = tok.pad_token_id
    return model


def dropout_kwargs(
    name: str | Path, dropout: float | None, residual_only: bool = True
) -> dict[str, float]:
    """Config overrides for dropout.

    residual_only (SFT, the paper's "residual dropout"): the residual fields the
    architecture has get `dropout` and attention/embedding dropout is set to 0 (GPT-2:
    resid_pdrop; GPT-NeoX/Falcon/BLOOM: hidden_dropout; OPT: dropout). Llama-style
    configs have no residual dropout field: nothing is set there and only the attention
    dropout is zeroed. Otherwise every dropout field gets `dropout` (0.0 turns all off).
    """
    if dropout is None:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name)
    if not residual_only:
        return {n: dropout for n in RESIDUAL_DROPOUT + OTHER_DROPOUT if _is_rate(config, n)}
    out = {n: dropout for n in RESIDUAL_DROPOUT if _is_rate(config, n)}
    out.update({n: 0.0 for n in OTHER_DROPOUT if _is_rate(config, n)})
    return out


def _is_rate(config: Any, name: str) -> bool:
    value = getattr(config, name, None)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def restore_dropout(model: Any, name: str | Path) -> None:
    """Put the dropout fields of `name`'s config back on the model before saving, so the
    training-time dropout does not follow the directory into the next stage."""
    from transformers import AutoConfig

    original = AutoConfig.from_pretrained(name)
    for n in RESIDUAL_DROPOUT + OTHER_DROPOUT:
        if _is_rate(original, n) and hasattr(model.config, n):
            setattr(model.config, n, getattr(original, n))


# ----------------------------------------------------------------------------- LoRA (peft)


def add_lora(model: Any, cfg: Any, task_type: str) -> Any:
    """Wrap `model` with LoRA adapters per cfg.lora_* (CAUSAL_LM or SEQ_CLS; the score
    head of a SEQ_CLS model stays fully trainable)."""
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora_targets or "all-linear"
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets if targets == "all-linear" else targets.split(","),
        task_type=task_type,
    )
    return get_peft_model(model, lora)


def merged(model: Any) -> Any:
    """A plain transformers model: LoRA adapters merged into a copy-free base if present."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def prepare_model(model: Any, cfg: Any, task_type: str) -> Any:
    """LoRA (cfg.lora_r > 0) and gradient checkpointing (cfg.gradient_checkpointing)."""
    if getattr(cfg, "gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if getattr(cfg, "lora_r", 0) > 0:
        model = add_lora(model, cfg, task_type)
    return model


def score_module(model: Any) -> Any:
    """The scalar head of a sequence-classification model (peft-wrapped or not)."""
    candidates = [(n, m) for n, m in model.named_modules() if n.split(".")[-1] == "score"]
    if not candidates:
        raise ValueError("reward model has no 'score' head")
    return min(candidates, key=lambda c: len(c[0]))[1]


def token_scores(model: Any, **inputs: Any) -> torch.Tensor:
    """The scalar head's output at every position (B, T): the value function of PPO.

    Read with a hook on the score head, which sequence-classification models apply to
    every position before pooling the last one, so any architecture (and LoRA) works.
    """
    captured: list[torch.Tensor] = []
    handle = score_module(model).register_forward_hook(lambda m, a, out: captured.append(out))
    try:
        model(**inputs)
    finally:
        handle.remove()
    return captured[0].squeeze(-1)


def rm_scores(model: PreTrainedModel, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scalar reward of each sequence; (N, T) -> (N,).

    Read at its last real token, as transformers' sequence classifiers pool, unless the
    model's config says `score_pooling: "mean"`: then the head's output averaged over every
    real token (prompt and response). A preference about the whole answer (its words, its
    tone) is then a mean the head reads directly, where at the last token a small model must
    first learn to gather it by attention: on the demo the tiny RM's held-out accuracy rose
    from 0.59 to 0.66 (bench/tune_rm.py). A reader outside training/ must pool the same way.
    """
    if score_pooling(model) == "mean":
        per_token = token_scores(model, input_ids=input_ids, attention_mask=mask)
        weights = mask.to(per_token.dtype)
        scores = (per_token * weights).sum(-1) / weights.sum(-1).clamp(min=1)
    else:
        scores = model(input_ids=input_ids, attention_mask=mask).logits.squeeze(-1)
    return scores + score_offset(model)


def _config(model: Any) -> Any:
    """A model's config, read through DDP's `.module` and peft's wrappers alike."""
    return getattr(getattr(model, "module", model), "config", None)


def score_offset(model: Any) -> float:
    """The offset kept in the config of a reward model with no bias to fold it into (0 else)."""
    return float(getattr(_config(model), SCORE_OFFSET, 0.0) or 0.0)


def score_pooling(model: Any) -> str:
    """How the reward model reads its score: "last" (transformers' own) or "mean"."""
    return str(getattr(_config(model), SCORE_POOLING, None) or "last")


def set_score_pooling(model: Any, pooling: str) -> None:
    """Record how `model` reads its score, in its config (saved with it and reloaded)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    setattr(_config(model), SCORE_POOLING, pooling)


def fold_score_offset(model: Any, delta: float) -> str:
    """Add `delta` to every score the model gives, inside the weights so it survives reload.

    The score head `w·h (+ b)` gets `delta` added to its bias if it has one. GPT-2 style
    heads have none and `from_pretrained` would drop an added one, so instead the final
    norm's bias (which feeds only the head) moves by delta·w/‖w‖²: w·(β + delta·w/‖w‖²)
    = w·β + delta, exactly. Architectures with neither (RMSNorm and a bias-free head, as
    Llama's) keep it as `config.score_offset`, which `rm_scores` adds: transformers saves
    and reloads the field, though a reader outside training/ must add it too. Returns
    where the offset went.
    """
    head: Any = model.score
    with torch.no_grad():
        if getattr(head, "bias", None) is not None:
            head.bias += delta
            return "score.bias"
        norm = next(
            (
                getattr(model.base_model, n)
                for n in FINAL_NORMS
                if getattr(getattr(model.base_model, n, None), "bias", None) is not None
            ),
            None,
        )
        if norm is None:  # Llama/Qwen/Mistral: RMSNorm and a bias-free head
            setattr(model.config, SCORE_OFFSET, score_offset(model) + delta)
            return f"config.{SCORE_OFFSET}"
        w = head.weight[0]  # (H,)
        norm.bias += delta * w / w.dot(w)
    return "final_norm.bias"


def save_model_dir(
    out: str | Path, model: PreTrainedModel, tok: Any, log: RunLog | None = None, **manifest: Any
) -> Path:
    """Write model + tokenizer + manifest.json (+ the run's metrics.jsonl) atomically to out."""
    ensure_chat_template(tok)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, **manifest)
        if log is not None:
            log.finish_into(tmp)
    return Path(out)
