"""A tiny offline base model for tests, the demo and benchmarks: no downloads anywhere.

A GPT-2 architecture of a few hundred thousand to a few million parameters with the
byte-level `ByT5Tokenizer` (its vocabulary is the 256 bytes plus specials, so it needs no
vocabulary file). Optionally warmed up for a few steps on a synthetic corpus so that
"plain language modelling" (PPO-ptx's alignment tax) means something. The directory it
writes loads like any other with `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import ByT5Tokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from training.contract import TinyConfig
from training.outputs import atomic_dir, write_manifest

WORDS = {
    "adj": "small big red quiet happy old new bright calm clever".split(),
    "noun": "cat dog bird model river teacher garden robot child city".split(),
    "verb": "sees likes finds helps follows answers draws builds".split(),
    "adv": "slowly quickly gladly often rarely".split(),
}


def synthetic_sentence(rng: random.Random) -> str:
    """One sentence of a toy grammar: 'the red cat often sees the old river.'"""
    w = {k: rng.choice(v) for k, v in WORDS.items()}
    obj = rng.choice(WORDS["noun"])
    return f"the {w['adj']} {w['noun']} {w['adv']} {w['verb']} the {obj}."


def synthetic_corpus(n: int, seed: int = 0) -> list[str]:
    """n short paragraphs of synthetic sentences (pretraining text for warm-up and PPO-ptx)."""
    rng = random.Random(seed)
    return [" ".join(synthetic_sentence(rng) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level tokenizer with pad (0) and eos (1) that needs no files."""
    tok = ByT5Tokenizer(extra_ids=0)
    tok.bos_token = tok.eos_token  # GPT-2 style: one </s> both starts and ends text
    return tok


def build_model(cfg: TinyConfig, tok: PreTrainedTokenizerBase) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 sized by cfg, with the tokenizer's special ids."""
    torch.manual_seed(cfg.seed)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def warm_up(model: GPT2LMHeadModel, tok: PreTrainedTokenizerBase, cfg: TinyConfig) -> float:
    """Train briefly on synthetic text; returns the last loss."""
    texts = synthetic_corpus(cfg.pretrain_steps * cfg.pretrain_batch, seed=cfg.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(cfg.pretrain_steps):
        batch = texts[step * cfg.pretrain_batch : (step + 1) * cfg.pretrain_batch]
        enc = tok(
            batch, max_length=cfg.pretrain_len, truncation=True, padding=True, return_tensors="pt"
        )
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    return loss.item()


def build_tiny(out: str | Path, cfg: TinyConfig | None = None) -> Path:
    """Build, optionally warm up, and save the tiny model + tokenizer to `out`."""
    cfg = cfg or TinyConfig()
    tok = tiny_tokenizer()
    model = build_model(cfg, tok)
    metrics: dict[str, float] = {"n_params": sum(p.numel() for p in model.parameters())}
    if cfg.pretrain_steps:
        metrics["warmup_loss"] = warm_up(model, tok, cfg)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, kind="base", parent_model=None, config=cfg, metrics=metrics)
    return Path(out)


GOOD = ("kind", "clear", "true", "helpful")
BAD = ("rude", "vague", "false", "lazy")


def synthetic_rankings(n: int, k: int, seed: int = 0, noise: float = 0.5) -> list:
    """n ranked prompts with k responses each, for tests and benchmarks.

    A response's hidden quality is (# good words − # bad words) plus labeler noise of
    std `noise`; the ranking sorts by it, best first, so a reward model can learn it but
    not perfectly (like the paper's ~73 % labeler agreement).
    """
    from training.records import GroupedRecord

    rng = random.Random(seed)
    records = []
    for i in range(n):
        prompt = f"describe the {rng.choice(WORDS['noun'])} {i}."
        responses, quality = [], []
        for _ in range(k):
            words = [rng.choice(WORDS["adj"] + list(GOOD + BAD)) for _ in range(rng.randint(3, 6))]
            score = sum(w in GOOD for w in words) - sum(w in BAD for w in words)
            responses.append("it is " + " and ".join(words) + ".")
            quality.append(score + rng.gauss(0, noise))
        order = sorted(range(k), key=lambda j: -quality[j])
        records.append(GroupedRecord(prompt, responses, [[j] for j in order], prompt_id=i))
    return records
