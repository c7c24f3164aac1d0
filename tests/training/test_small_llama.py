"""A round on the small Llama-style model: every stage, LoRA on and off, through the CLI."""

import json

import pytest

from training.__main__ import main
from training.contract import SmallLlamaConfig
from training.data import read_sft
from training.models import load_reward_model, load_tokenizer
from training.records import PromptRecord, SFTRecord, write_jsonl
from training.reward import mean_score
from training.small_llama import EOS, TURN, build_small_llama
from training.tiny import synthetic_corpus, synthetic_rankings

pytestmark = pytest.mark.slow  # builds and trains models: seconds each on a small CPU


def write_round_data(d):
    """Small exported-like files: demonstrations, rankings, prompts, pretraining text."""
    sft = [SFTRecord(prompt=f"describe the cat {i}.", completion=t[:30])
           for i, t in enumerate(synthetic_corpus(12, seed=1))]
    write_jsonl(d / "sft.jsonl", sft)
    write_jsonl(d / "rank.jsonl", synthetic_rankings(8, 4, seed=2))
    write_jsonl(d / "prompts.jsonl", [PromptRecord(prompt_id=i, text=f"the cat {i}")
                                      for i in range(3)])
    (d / "pre.txt").write_text("\n\n".join(synthetic_corpus(12, seed=3)))


def run_round(base, d, extra=()):
    """sft -> rm -> ppo -> sample -> bon through `python -m training`, as a round runs them."""
    common = ["--threads", "1"]
    stages = [
        ["sft", "--base-model", str(base), "--train-data", str(d / "sft.jsonl"),
         "--out", str(d / "sft"), "--epochs", "1", "--batch-size", "4", "--max-len", "64",
         *extra],
        ["rm", "--base-model", str(d / "sft"), "--train-data", str(d / "rank.jsonl"),
         "--demonstrations", str(d / "sft.jsonl"), "--out", str(d / "rm"),
         "--prompts-per-step", "4", "--max-len", "64", *extra],
        ["ppo", "--policy-model", str(d / "sft"), "--reward-model", str(d / "rm"),
         "--prompts", str(d / "prompts.jsonl"), "--out", str(d / "policy"),
         "--pretrain-data", str(d / "pre.txt"), "--steps", "2", "--rollout-size", "3",
         "--minibatch-size", "3", "--ppo-epochs", "1", "--max-new-tokens", "8",
         "--heldout-texts", "4", "--ptx-batch-size", "2", "--ptx-max-len", "48", *extra],
        ["sample", "--model", str(d / "policy"), "--prompts", str(d / "prompts.jsonl"),
         "--out", str(d / "cands.jsonl"), "--k", "4", "--max-new-tokens", "8"],
        ["bon", "--model", str(d / "policy"), "--prompts", str(d / "prompts.jsonl"),
         "--out", str(d / "bon.jsonl"), "--reward-model", str(d / "rm"), "--n", "3",
         "--max-new-tokens", "8"],
    ]
    for args in stages:
        assert main([*common, *args]) == 0, args[0]


def demo_mean(rm_dir, data):
    """The reloaded reward model's mean score on the demonstrations (0 once centred)."""
    tok = load_tokenizer(rm_dir)
    rm = load_reward_model(rm_dir, tok)
    records = read_sft(data)
    return mean_score(rm, tok, [r.prompt for r in records], [r.completion for r in records], 64)


def test_small_llama_loads_with_chat_template_bos_eos_and_pad(small_llama_dir):
    config = json.loads((small_llama_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    tok = load_tokenizer(small_llama_dir)
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == (EOS, "<pad>", "<s>")
    assert tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                   add_generation_prompt=True, tokenize=False)
    assert text == f"<s>{TURN}user\nhi{EOS}\n{TURN}assistant\n"
    # the markers are single tokens, never merged into words by the BPE
    assert len(tok(EOS, add_special_tokens=False).input_ids) == 1
    assert not [t for t in tok.get_vocab() if EOS in t and t != EOS]
    manifest = json.loads((small_llama_dir / "manifest.json").read_text())
    assert 1e5 < manifest["metrics"]["n_params"] < 1e6


@pytest.mark.parametrize("lora", [0, 4], ids=["full", "lora"])
def test_round_runs_on_small_llama(small_llama_dir, tmp_path, lora):
    write_round_data(tmp_path)
    run_round(small_llama_dir, tmp_path, ["--lora-r", str(lora)] if lora else [])

    sft = json.loads((tmp_path / "sft" / "manifest.json").read_text())
    assert sft["prompt_layout"] == "model"  # the model's own chat template
    rm = json.loads((tmp_path / "rm" / "manifest.json").read_text())
    # Llama has no bias to fold the demonstration offset into: it goes to the config
    assert rm["score_offset"]["folded_into"] == "config.score_offset"
    assert abs(rm["metrics"]["demo_mean_after"]) < 1e-4
    assert abs(demo_mean(tmp_path / "rm", tmp_path / "sft.jsonl")) < 1e-4
    for name in ("sft", "rm", "policy"):  # adapters merged: plain Llama directories
        assert not (tmp_path / name / "adapter_config.json").exists()
    rows = [json.loads(x) for x in (tmp_path / "cands.jsonl").read_text().splitlines()]
    assert [len(r["candidates"]) for r in rows] == [4, 4, 4]
    texts = [c["text"] for r in rows for c in r["candidates"]]
    assert not [t for t in texts if EOS in t or TURN in t or "<s>" in t]


def test_round_runs_on_a_tokenizer_without_pad(tmp_path):
    base = build_small_llama(tmp_path / "base", SmallLlamaConfig(pad_token=False,
                                                                 pretrain_steps=0))
    tok = load_tokenizer(base)
    assert tok.pad_token_id == tok.eos_token_id  # Llama's way: eos pads
    write_round_data(tmp_path)
    run_round(base, tmp_path)
    assert abs(demo_mean(tmp_path / "rm", tmp_path / "sft.jsonl")) < 1e-4
