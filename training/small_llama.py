"""A small Llama-style base model made offline: what a user's Hugging Face model looks like.

The tiny GPT-2 of training/tiny.py has a byte-level tokenizer and the plain layout; a
user's model (Llama, Qwen, Mistral) differs in every place the stages touch: RMSNorm and
no biases (nowhere to fold the reward offset), rotary positions, grouped-query attention,
separate q/k/v/o and gate/up/down projections (LoRA targets), a SentencePiece-style BPE
tokenizer that adds a bos token, a Jinja chat template with role markers whose turn end is
the eos token, and (like Llama's) possibly no pad token. This builds one of a few hundred
thousand parameters, with its tokenizer trained here by the `tokenizers` library on the toy
English, and saves it as a normal directory that `AutoModelForCausalLM` and
`AutoTokenizer.from_pretrained` load, so CPU tests run a round on it in seconds.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from training import toy_english
from training.contract import SmallLlamaConfig
from training.outputs import atomic_dir, write_manifest
from training.tiny import warm_up

BOS, EOS, PAD, UNK = "<s>", "<|im_end|>", "<pad>", "<unk>"
TURN = "<|im_start|>"
# ChatML turns (as Qwen's), opened by bos (as Llama 3's); a turn ends with eos, so the
# stages' "response + eos" is exactly the assistant turn the template writes.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def chat_texts(n: int, seed: int = 0) -> list[str]:
    """Warm-up text: toy paragraphs, one in three a toy prompt answered as a chat turn."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        if rng.random() < 1 / 3:
            prompt, topic = toy_english.prompt(rng)
            answer = toy_english.paragraph(rng, about=topic)
            texts.append(f"{TURN}user\n{prompt}{EOS}\n{TURN}assistant\n{answer}{EOS}")
        else:
            texts.append(toy_english.paragraph(rng))
    return texts


def small_tokenizer(cfg: SmallLlamaConfig) -> PreTrainedTokenizerFast:
    """A Metaspace BPE (SentencePiece style, as Llama's) trained on the toy English; it adds
    bos in front of plain text and has the chat template, eos and (if cfg.pad_token) pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = [UNK, BOS, EOS, TURN] + ([PAD] if cfg.pad_token else [])
    bpe = Tokenizer(models.BPE(unk_token=UNK))
    # a newline is its own piece (the template puts one after every role and turn)
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(prepend_scheme="first"),
        ]
    )
    bpe.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=specials,
                                  initial_alphabet=[chr(i) for i in range(32, 127)] + ["\n"],
                                  show_progress=False)
    # trained on the words only: the trainer would merge the turn markers into words
    words = [t.replace(TURN, " ").replace(EOS, " ") for t in chat_texts(4000, seed=cfg.seed + 2)]
    bpe.train_from_iterator(words + ["system user assistant\n"] * 50, trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bpe.token_to_id(BOS))]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS,
                                  unk_token=UNK, pad_token=PAD if cfg.pad_token else None,
                                  additional_special_tokens=[TURN])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def small_model(cfg: SmallLlamaConfig, tok: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A randomly initialised Llama sized by cfg, with the tokenizer's special ids."""
    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def build_small_llama(out: str | Path, cfg: SmallLlamaConfig | None = None) -> Path:
    """Build, optionally warm up, and save the small Llama + tokenizer to `out`."""
    cfg = cfg or SmallLlamaConfig()
    tok = small_tokenizer(cfg)
    model = small_model(cfg, tok)
    metrics: dict[str, float] = {"n_params": sum(p.numel() for p in model.parameters())}
    if cfg.pretrain_steps:
        texts = chat_texts(cfg.pretrain_steps * cfg.pretrain_batch, seed=cfg.seed + 1)
        if not cfg.pad_token:  # the warm-up batches need some padding id; masked anyway
            tok.pad_token = EOS
        metrics["warmup_loss"] = warm_up(model, tok, cfg, texts)
        if not cfg.pad_token:
            tok.pad_token = None
    model.generation_config.pad_token_id = tok.pad_token_id
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, kind="base", parent_model=None, config=cfg, metrics=metrics)
    return Path(out)
