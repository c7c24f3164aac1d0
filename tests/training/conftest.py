"""Shared fixtures: one tiny offline model (and one small Llama) per test run, in a temp dir."""

import pytest
import torch

from training.contract import SmallLlamaConfig
from training.small_llama import build_small_llama
from training.tiny import TinyConfig, build_tiny

torch.set_num_threads(1)  # the machine is shared; one thread is faster under load

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


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A warmed-up tiny GPT-2 + BPE tokenizer directory, shared by all tests."""
    return build_tiny(tmp_path_factory.mktemp("tiny") / "base", TINY)


SMALL_LLAMA = SmallLlamaConfig(pretrain_steps=60, pretrain_batch=16, pretrain_len=64, seed=0)


@pytest.fixture(scope="session")
def small_llama_dir(tmp_path_factory):
    """A small Llama-style model (Metaspace BPE, chat template, own pad) for every test."""
    return build_small_llama(tmp_path_factory.mktemp("small-llama") / "base", SMALL_LLAMA)
