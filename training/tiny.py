"""A tiny offline base model for tests, the demo and benchmarks: no downloads anywhere.

A GPT-2 architecture of a few hundred thousand to a few million parameters, pretrained for
a few hundred steps on the toy English of training/toy_english.py, so that what it writes
is words a person can read (and judge by content) rather than noise. Its tokenizer is a
byte-level BPE trained here on the same text with the `tokenizers` library: every word of
the toy English is one token, and any other text still encodes, byte by byte. The older
byte tokenizer (`ByT5Tokenizer`, 256 bytes plus specials) remains as `tokenizer="byte"`.
The directory it writes loads like any other with `AutoModelForCausalLM` /
`AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from transformers import (
    ByT5Tokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from training import toy_english
from training.contract import TinyConfig
from training.data import PROMPT_TEMPLATE
from training.outputs import atomic_dir, write_manifest

WORDS = {
    "adj": "small big red quiet happy old new bright calm clever".split(),
    "noun": "cat dog bird model river teacher garden robot child city".split(),
    "verb": "sees likes finds helps follows answers draws builds".split(),
    "adv": "slowly quickly gladly often rarely".split(),
}


def synthetic_corpus(n: int, seed: int = 0) -> list[str]:
    """n short paragraphs of the toy English (pretraining text for warm-up and PPO-ptx)."""
    return toy_english.corpus(n, seed)


def pretraining_texts(n: int, seed: int = 0) -> list[str]:
    """The warm-up text: paragraphs, and one in three a toy prompt answered in the plain
    layout, so the base model has seen a request followed by an answer (as a web-scale
    corpus has) and SFT only has to teach what a good answer is."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        if rng.random() < 1 / 3:
            prompt, topic = toy_english.prompt(rng)
            texts.append(PROMPT_TEMPLATE.format(prompt=prompt)
                         + toy_english.paragraph(rng, about=topic))
        else:
            texts.append(toy_english.paragraph(rng))
    return texts


def tiny_tokenizer(kind: str = "byte", vocab_size: int = 1024,
                   seed: int = 0) -> PreTrainedTokenizerBase:
    """pad (0) and eos (1) and either the 256 bytes (`byte`, no files needed) or a byte-level
    BPE trained on the toy English (`bpe`)."""
    if kind == "byte":
        tok = ByT5Tokenizer(extra_ids=0)
        tok.bos_token = tok.eos_token  # GPT-2 style: one </s> both starts and ends text
        return tok
    if kind != "bpe":
        raise ValueError(f"tokenizer must be bpe or byte, not {kind!r}")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(pretraining_texts(4000, seed=seed + 2), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>",
                                   bos_token="</s>")


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


def warm_up(model: PreTrainedModel, tok: PreTrainedTokenizerBase, cfg: Any,
            texts: list[str] | None = None) -> float:
    """Train briefly on the toy English (or `texts`); returns the last loss."""
    if texts is None:
        texts = pretraining_texts(cfg.pretrain_steps * cfg.pretrain_batch, seed=cfg.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    warm = max(1, cfg.pretrain_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(
        (step + 1) / warm, max(0.05, (cfg.pretrain_steps - step) / (cfg.pretrain_steps - warm))))
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
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    return loss.item()


def sample_texts(model: GPT2LMHeadModel, tok: PreTrainedTokenizerBase, n: int = 32,
                 max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0) -> list[str]:
    """n free samples of the model (from the start token), for checking what it writes."""
    torch.manual_seed(seed)
    start = torch.full((n, 1), tok.eos_token_id)
    with torch.no_grad():
        out = model.generate(start, attention_mask=torch.ones_like(start), do_sample=True,
                             temperature=temperature, max_new_tokens=max_new_tokens,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return tok.batch_decode(out, skip_special_tokens=True)


def real_word_share(model: GPT2LMHeadModel, tok: PreTrainedTokenizerBase, seed: int = 0) -> float:
    """The share of the words in the model's free samples that are toy-English words."""
    return toy_english.real_word_share(sample_texts(model, tok, seed=seed))


def build_tiny(out: str | Path, cfg: TinyConfig | None = None) -> Path:
    """Build, optionally warm up, and save the tiny model + tokenizer to `out`."""
    cfg = cfg or TinyConfig()
    tok = tiny_tokenizer(cfg.tokenizer, cfg.vocab_size, cfg.seed)
    model = build_model(cfg, tok)
    metrics: dict[str, float] = {"n_params": sum(p.numel() for p in model.parameters())}
    if cfg.pretrain_steps:
        metrics["warmup_loss"] = warm_up(model, tok, cfg)
        metrics["real_word_share"] = real_word_share(model, tok, seed=cfg.seed)
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
