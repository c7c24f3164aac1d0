"""The tiny model the training tests share (training/tiny.py's GPT-2 and BPE tokenizer, warmed
up), built once per test process by the `tiny_dir` fixture of tests/conftest.py."""

from training.contract import TinyConfig

TINY = TinyConfig(
    n_layer=2,
    n_embd=64,
    n_head=4,
    n_positions=256,
    pretrain_steps=100,
    pretrain_batch=16,
    pretrain_len=64,
    seed=0,
)
