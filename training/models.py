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

from training.outputs import RunLog, atomic_dir, write_manifest

FINAL_NORMS = ("ln_f", "norm", "final_layer_norm", "final_layernorm")


def load_tokenizer(name: str | Path) -> Any:
    """The model's tokenizer with a pad token (eos if it has none), right padding."""
    tok = AutoTokenizer.from_pretrained(name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def load_policy(name: str | Path, tok: Any, dropout: float | None = None) -> PreTrainedModel:
    """A causal LM, optionally with its residual/attention/embedding dropout set."""
    kwargs = dropout_kwargs(name, dropout)
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    model.config.pad_token_id = tok.pad_token_id
    return model


def load_reward_model(name: str | Path, tok: Any, dropout: float | None = None) -> PreTrainedModel:
    """The causal LM with its unembedding replaced by a scalar head (or an existing RM)."""
    kwargs = dropout_kwargs(name, dropout)
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=1, **kwargs)
    model.config.pad_token_id = tok.pad_token_id
    return model


def dropout_kwargs(name: str | Path, dropout: float | None) -> dict[str, float]:
    """Config overrides that set every dropout field the architecture has (GPT-2: resid,
    embd, attn; others: hidden/attention dropout)."""
    if dropout is None:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name)
    names = (
        "resid_pdrop",
        "embd_pdrop",
        "attn_pdrop",
        "hidden_dropout",
        "attention_dropout",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "dropout",
    )
    return {n: dropout for n in names if hasattr(config, n)}


def rm_scores(model: PreTrainedModel, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scalar reward of each sequence at its last real token; (N, T) -> (N,)."""
    return model(input_ids=input_ids, attention_mask=mask).logits.squeeze(-1)


def fold_score_offset(model: Any, delta: float) -> str:
    """Add `delta` to every score the model gives, inside the weights so it survives reload.

    The score head `w·h (+ b)` gets `delta` added to its bias if it has one. GPT-2 style
    heads have none and `from_pretrained` would drop an added one, so instead the final
    norm's bias (which feeds only the head) moves by delta·w/‖w‖²: w·(β + delta·w/‖w‖²)
    = w·β + delta, exactly. Returns where the offset went.
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
        if norm is None:
            raise ValueError("score head and final norm have no bias to fold the offset into")
        w = head.weight[0]  # (H,)
        norm.bias += delta * w / w.dot(w)
    return "final_norm.bias"


def save_model_dir(
    out: str | Path, model: PreTrainedModel, tok: Any, log: RunLog | None = None, **manifest: Any
) -> Path:
    """Write model + tokenizer + manifest.json (+ the run's metrics.jsonl) atomically to out."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, **manifest)
        if log is not None:
            log.finish_into(tmp)
    return Path(out)
