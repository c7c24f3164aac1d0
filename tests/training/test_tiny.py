"""The tiny base model writes the toy English: words a person can read and judge."""

import random

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from training import toy_english
from training.tiny import TinyConfig, build_model, build_tiny, real_word_share, tiny_tokenizer


def test_bpe_tokenizer_makes_each_toy_word_one_token_and_still_encodes_any_text():
    tok = tiny_tokenizer("bpe")
    for word in ("teacher", "garden", "quietly", "remembers"):
        assert len(tok(" " + word, add_special_tokens=False).input_ids) == 1, word
    text = "Ünïcode ✓ and words it never saw: xylophone"
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    assert (tok.pad_token_id, tok.eos_token_id) == (0, 1)


def test_toy_english_is_all_real_words_and_prompts_name_their_topic():
    rng = random.Random(3)
    assert toy_english.real_word_share(toy_english.corpus(50, seed=1)) == 1.0
    for _ in range(50):
        text, topic = toy_english.prompt(rng)
        assert toy_english.topic_of(text) == topic and toy_english.real_word_share([text]) == 1
    assert toy_english.real_word_share(["the cat sees zqx blorp."]) == pytest.approx(3 / 5)


@pytest.mark.slow
def test_default_tiny_base_samples_at_least_90_percent_real_words(tmp_path):
    path = build_tiny(tmp_path / "base", TinyConfig())
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert real_word_share(model, tok, seed=5) >= 0.9


def test_an_untrained_tiny_model_writes_noise():
    """The check above can fail: random weights sample mostly non-words."""
    tok = tiny_tokenizer("bpe")
    model = build_model(TinyConfig(pretrain_steps=0, n_layer=1, n_embd=32, n_head=2), tok)
    assert real_word_share(model, tok) < 0.6
