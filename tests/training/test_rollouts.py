"""PPO's rollout engine: the guard that picks it, vLLM's answers as `generate`'s tensors,
and the policy's weights reaching the engine after every update.

vLLM needs a GPU, so a stand-in module named `vllm` plays its engine: its own copy of the
model directory, sampling with transformers, weights loaded by name like vLLM's
`load_weights`.
"""

import importlib.machinery
import json
import sys
import types

import pytest
import torch

from training import ppo, rollouts
from training.data import lengths_mask, pad
from training.models import load_policy, load_reward_model, load_tokenizer
from training.outputs import read_manifest
from training.ppo import PPOConfig, finished, rollout, train_ppo
from training.records import PromptRecord, write_jsonl
from training.rollouts import VLLMRollouts, choose_backend, policy_weights, response_batch

LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
PROMPTS = ["the cat", "a big red dog sat on the old mat", "the calm bird", "she said",
           "the small house was", "my friend", "the quiet river ran past the town", "a cup"]


def toy_reward(prompts, responses):
    """Likes the letter e (as tests/training/test_ppo.py)."""
    return torch.tensor([r.count("e") / 4.0 for r in responses])


class SamplingParams:
    def __init__(self, **kw):
        self.kw = kw


class FakeLLM:
    """Stands in for vLLM's `LLM` in this process: the worker's model is reachable where
    the external launcher puts it, answers end at the stop token and include it."""

    made: list["FakeLLM"] = []

    def __init__(self, model, **kw):
        self.kw = kw
        self.tok = load_tokenizer(model)
        self.model = load_policy(model, self.tok, dropout=0.0).eval()
        runner = types.SimpleNamespace(model=self)
        worker = types.SimpleNamespace(driver_worker=types.SimpleNamespace(model_runner=runner))
        self.llm_engine = types.SimpleNamespace(model_executor=worker)
        self.loads: list[list[str]] = []
        self.resets = 0
        self.sampled_with: list[dict[str, torch.Tensor]] = []
        FakeLLM.made.append(self)

    def load_weights(self, weights):
        state = self.model.state_dict()
        names = []
        with torch.no_grad():
            for name, tensor in weights:
                assert state[name].shape == tensor.shape, name  # named as in the directory
                state[name].copy_(tensor)
                names.append(name)
        self.loads.append(names)

    def reset_prefix_cache(self):
        self.resets += 1

    @torch.no_grad()
    def generate(self, inputs, params, use_tqdm):
        ids = [x["prompt_token_ids"] for x in inputs]
        stop = params.kw["stop_token_ids"][0]
        seqs = self.model.generate(
            input_ids=pad(ids, self.tok.pad_token_id, left=True),
            attention_mask=lengths_mask(ids, left=True),
            max_new_tokens=params.kw["max_tokens"],
            do_sample=True,
            temperature=params.kw["temperature"],
            top_p=params.kw["top_p"],
            top_k=0,
            pad_token_id=self.tok.pad_token_id,
            eos_token_id=stop,
        )
        self.sampled_with.append({k: v.clone() for k, v in self.model.state_dict().items()})
        answers = []
        for row in seqs[:, max(map(len, ids)) :].tolist():
            if stop in row:  # the engine ends an answer at its stop token and returns it
                row = row[: row.index(stop) + 1]
            answers.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=row)]))
        return answers


@pytest.fixture
def fake_vllm(monkeypatch):
    """vLLM "installed" (the stand-in) with a GPU "present"; the launcher's env put back."""
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.LLM, module.SamplingParams = FakeLLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(rollouts, "cuda_present", lambda: True)
    for key in LAUNCHER_ENV:  # recorded, so whatever the engine sets is undone after
        monkeypatch.setenv(key, "-")
        monkeypatch.delenv(key)
    FakeLLM.made.clear()
    return FakeLLM.made


@pytest.fixture
def no_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed, wherever this runs


def ppo_config(tiny_dir, root, **overrides):
    write_jsonl(root / "prompts.jsonl",
                [PromptRecord(prompt_id=i, text=p) for i, p in enumerate(PROMPTS)])
    values = dict(policy_model=str(tiny_dir), reward_model=None,
                  prompts=str(root / "prompts.jsonl"), out=str(root / "policy"), ptx_coef=0.0,
                  steps=3, rollout_size=4, minibatch_size=4, ppo_epochs=1, lr=1e-3,
                  value_lr=1e-3, max_new_tokens=8, tracker="none")
    return PPOConfig(**{**values, **overrides})


def test_response_batch_lays_engine_answers_out_as_generate_does():
    tok = types.SimpleNamespace(pad_token_id=0, eos_token_id=1)
    answers = [[5, 6, 1], [7], [8, 9, 10, 11, 12]]  # ended by eos, by another stop, by the cap
    ids, mask = response_batch(answers, tok, max_new_tokens=4)
    assert ids.tolist() == [[5, 6, 1, 0], [7, 0, 0, 0], [8, 9, 10, 11]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]


def test_backend_is_chosen_by_what_the_machine_has(fake_vllm, monkeypatch):
    assert choose_backend(PPOConfig(rollout_backend="auto"))[0] == "vllm"
    assert choose_backend(PPOConfig(rollout_backend="vllm"))[0] == "vllm"
    assert choose_backend(PPOConfig(rollout_backend="hf"))[0] == "hf"
    backend, why = choose_backend(PPOConfig(rollout_backend="auto", cpu=True))
    assert (backend, why) == ("hf", "rollout_backend=auto: the run is on the CPU (cpu=True)")
    monkeypatch.setattr(rollouts, "cuda_present", lambda: False)
    assert choose_backend(PPOConfig(rollout_backend="auto")) == (
        "hf", "rollout_backend=auto: there is no CUDA GPU")
    with pytest.raises(RuntimeError, match="vLLM installed and a CUDA GPU, and here there is no"):
        choose_backend(PPOConfig(rollout_backend="vllm"))
    with pytest.raises(ValueError, match="hf, vllm or auto, not 'vLLM'"):
        choose_backend(PPOConfig(rollout_backend="vLLM"))
    monkeypatch.setattr(rollouts, "cuda_present", lambda: True)
    with pytest.raises(ValueError, match="vllm_gpu_memory must be between 0 and 1, not 1.5"):
        choose_backend(PPOConfig(rollout_backend="vllm", vllm_gpu_memory=1.5))


@pytest.mark.slow  # trains a few steps
def test_auto_without_vllm_trains_through_generate_and_says_why(
        tiny_dir, tmp_path, no_vllm, capsys):
    out = train_ppo(ppo_config(tiny_dir, tmp_path, rollout_backend="auto", steps=2),
                    reward=toy_reward)
    said = capsys.readouterr().out
    assert "Rollouts through transformers generate (rollout_backend=auto: vLLM is not " \
           "installed)" in said
    assert read_manifest(out)["rollout_backend"] == "hf"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_vllm_named_without_vllm_stops_before_anything_loads_or_is_written(
        tmp_path, no_vllm, monkeypatch):
    cfg = ppo_config(tmp_path / "sft", tmp_path, rollout_backend="vllm")  # never opened
    before = sorted(p.name for p in tmp_path.iterdir())

    def too_far(*args, **kwargs):
        raise AssertionError("training work started")

    monkeypatch.setattr(ppo, "make_accelerator", too_far)
    monkeypatch.setattr(ppo, "build_models", too_far)
    with pytest.raises(RuntimeError, match="rollout_backend=vllm needs vLLM installed and a "
                                           "CUDA GPU, and here vLLM is not installed"):
        train_ppo(cfg, reward=toy_reward)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no tracking dir


@pytest.mark.slow  # samples twice with the tiny model
def test_engine_rollout_gives_the_tensors_generate_gives(tiny_dir, fake_vllm):
    tok = load_tokenizer(tiny_dir)
    tok.padding_side = "left"
    policy = load_policy(tiny_dir, tok, dropout=0.0).eval()
    value = load_reward_model(tiny_dir, tok, dropout=0.0).eval()
    # the tiny model never ends an answer within a few tokens: "." stands in for its end
    # token, so that both answers that end and answers cut at the cap are laid out
    tok.eos_token = "."
    cfg = PPOConfig(policy_model=str(tiny_dir), max_new_tokens=12, rollout_backend="vllm")
    torch.manual_seed(3)
    by_generate = rollout(policy, policy, value, tok, toy_reward, PROMPTS, cfg, 0.02)
    engine = VLLMRollouts(cfg)
    torch.manual_seed(3)  # the stand-in samples with the same generator: the same answers
    by_engine = rollout(policy, policy, value, tok, toy_reward, PROMPTS, cfg, 0.02, engine)
    made = fake_vllm[0].kw
    assert made["distributed_executor_backend"] == "external_launcher"  # the worker in-process
    assert made["max_model_len"] == 256  # 256 prompt + 12 answer tokens, within 256 positions
    assert by_engine["n_prompt"] == by_generate["n_prompt"]
    for key in ("seq", "mask", "rmask"):  # prompt ids and padding, response ids, eos masks
        assert torch.equal(by_engine[key], by_generate[key]), key
    for key in ("logprobs", "values", "scores", "advantages", "returns", "kl"):
        torch.testing.assert_close(by_engine[key], by_generate[key])
    ended = finished(by_engine["seq"][:, by_engine["n_prompt"] :], by_engine["rmask"],
                     tok.eos_token_id)
    assert ended.any() and not ended.all()  # both kinds of answer were laid out


@pytest.mark.slow  # trains a few steps
@pytest.mark.parametrize("lora_r", [0, 4])
def test_each_update_reaches_the_engine_before_the_next_rollout(
        tiny_dir, tmp_path, fake_vllm, monkeypatch, lora_r):
    at_rollout = []  # the policy's weights, as the engine should hold them, at each rollout
    real_rollout = ppo.rollout

    def watched(policy, *args, **kwargs):
        at_rollout.append({name: w.clone() for name, w in policy_weights(policy)})
        return real_rollout(policy, *args, **kwargs)

    monkeypatch.setattr(ppo, "rollout", watched)
    out = train_ppo(ppo_config(tiny_dir, tmp_path, rollout_backend="vllm", lora_r=lora_r),
                    reward=toy_reward)
    [engine] = fake_vllm
    assert len(engine.sampled_with) == len(at_rollout) == 3
    assert len(engine.loads) == engine.resets == 2  # after updates 1 and 2, not before the first
    for names in engine.loads:
        assert set(names) == set(at_rollout[0])
    if lora_r:  # only the adapted layers' weights change, and they go merged
        assert all(n.endswith(".weight") and "lora" not in n for n in at_rollout[0])
    for wanted, held in zip(at_rollout, engine.sampled_with, strict=True):
        for name, weight in wanted.items():
            torch.testing.assert_close(held[name], weight, rtol=0, atol=0)
    moved = [not torch.equal(at_rollout[-1][n], at_rollout[0][n]) for n in at_rollout[0]]
    assert any(moved)  # the updates changed what the engine samples from
    manifest = read_manifest(out)
    assert manifest["rollout_backend"] == "vllm"
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["gen_time_share"] > 0
