"""Shared fixtures: one small Llama per test run, in a temp dir (the tiny model, `tiny_dir`, is
tests/conftest.py's, shared with the loop's tests)."""

import pytest
import torch

from tests.tiny import TINY  # noqa: F401 - where tests have imported it from
from training.contract import SmallLlamaConfig
from training.small_llama import build_small_llama

torch.set_num_threads(1)  # the machine is shared; one thread is faster under load

SMALL_LLAMA = SmallLlamaConfig(pretrain_steps=60, pretrain_batch=16, pretrain_len=64, seed=0)


@pytest.fixture(scope="session")
def small_llama_dir(tmp_path_factory):
    """A small Llama-style model (Metaspace BPE, chat template, own pad) for every test."""
    return build_small_llama(tmp_path_factory.mktemp("small-llama") / "base", SMALL_LLAMA)
