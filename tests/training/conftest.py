"""Shared fixtures: one tiny offline model per test run, built in a temp dir."""

import pytest
import torch

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
