"""Generation: response masks stop at eos, best-of-N keeps the top-scoring sample, and
`score` reads given answers with a reward model."""

import json

import pytest
import torch

from training.models import load_policy, load_reward_model, load_tokenizer
from training.sampling import best_of_n, response_mask, sample


def test_response_mask_keeps_tokens_through_first_eos():
    eos = 1
    responses = torch.tensor([[5, 6, 1, 0, 0], [5, 1, 7, 1, 0], [5, 6, 7, 8, 9]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(response_mask(responses, eos), expected)


def test_sample_returns_k_per_prompt_and_best_of_n_picks_the_max(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    model = load_policy(tiny_dir, tok).eval()
    torch.manual_seed(0)
    samples = sample(model, tok, ["the cat", "a dog"], 3, max_new_tokens=12)
    assert [len(s) for s in samples] == [3, 3]
    assert len({*samples[0], *samples[1]}) > 1  # sampling, not a constant output

    def longest(prompts, texts):
        return torch.tensor([float(len(t)) for t in texts])

    torch.manual_seed(1)
    best = best_of_n(model, tok, longest, ["the cat"], 6, max_new_tokens=12)
    torch.manual_seed(1)
    candidates = sample(model, tok, ["the cat"], 6, max_new_tokens=12)[0]
    assert best[0][0] == max(candidates, key=len)
    assert best[0][1] == float(len(best[0][0]))


def test_vllm_backend_gets_the_chat_template_prompt_ids(tiny_dir, tmp_path, monkeypatch):
    import json
    import sys
    import types

    from training.data import encode_prompt
    from training.records import PromptRecord, write_jsonl
    from training.sampling import SampleConfig, run_sampling

    calls = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:  # stands in for vLLM's engine, which needs a GPU
        def __init__(self, model, seed):
            calls["model"] = model

        def generate(self, inputs, params, use_tqdm):
            calls["inputs"], calls["params"] = inputs, params.kw
            out = types.SimpleNamespace
            return [
                out(outputs=[out(text=f"answer {i}.{j}") for j in range(params.kw["n"])])
                for i in range(len(inputs))
            ]

    monkeypatch.setitem(
        sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)
    )
    write_jsonl(tmp_path / "p.jsonl", [PromptRecord(prompt_id=i, text=f"q{i}") for i in range(2)])
    cfg = SampleConfig(
        model=str(tiny_dir),
        prompts=str(tmp_path / "p.jsonl"),
        out=str(tmp_path / "c.jsonl"),
        k=3,
        backend="vllm",
        max_new_tokens=7,
    )
    run_sampling(cfg)
    tok = load_tokenizer(tiny_dir)
    assert calls["inputs"][1]["prompt_token_ids"] == encode_prompt(tok, "q1", 256)
    assert calls["params"]["n"] == 3 and calls["params"]["max_tokens"] == 7
    assert calls["params"]["stop_token_ids"] == [tok.eos_token_id]
    rows = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [c["text"] for c in rows[1]["candidates"]] == ["answer 1.0", "answer 1.1", "answer 1.2"]


def test_auto_backend_falls_back_to_transformers_without_vllm(tiny_dir, tmp_path, monkeypatch):
    import json
    import sys

    import pytest

    from training.records import PromptRecord, write_jsonl
    from training.sampling import HFSampler, SampleConfig, make_sampler, run_sampling, vllm_usable

    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed, wherever this runs
    assert not vllm_usable()
    write_jsonl(tmp_path / "p.jsonl", [PromptRecord(prompt_id=i, text=f"q{i}") for i in range(2)])
    cfg = SampleConfig(model=str(tiny_dir), prompts=str(tmp_path / "p.jsonl"),
                       out=str(tmp_path / "c.jsonl"), k=2, max_new_tokens=4, backend="auto")
    assert isinstance(make_sampler(cfg, load_tokenizer(tiny_dir)), HFSampler)
    run_sampling(cfg)
    rows = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [len(r["candidates"]) for r in rows] == [2, 2]

    asked = SampleConfig(**{**vars(cfg), "backend": "vllm", "out": str(tmp_path / "v.jsonl")})
    with pytest.raises(RuntimeError, match="needs vLLM installed"):
        run_sampling(asked)  # vllm named outright: a clear error, no file
    assert not (tmp_path / "v.jsonl").exists()


def test_score_writes_each_candidate_its_rm_score_in_order(tiny_dir, tmp_path):
    from training.contract import ScoreConfig
    from training.sampling import rm_reward_fn, run_scoring

    rows = [{"item_id": 7, "prompt": "the cat", "candidates": [{"text": "sat down."},
                                                               {"text": "ran off to the sea."}]},
            {"item_id": 8, "prompt": "a dog", "candidates": [{"text": "barked."}]},
            {"item_id": 9, "prompt": "a bird", "candidates": []}]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rm_dir = tmp_path / "rm"  # a reward model with a fixed (saved) score head
    tok = load_tokenizer(tiny_dir)
    load_reward_model(tiny_dir, tok).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    out = run_scoring(ScoreConfig(reward_model=str(rm_dir), data=str(data),
                                  out=str(tmp_path / "scored.jsonl"), batch_size=2))
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["item_id"] for r in scored] == [7, 8, 9] and scored[2]["candidates"] == []
    expected = rm_reward_fn(str(rm_dir))(["the cat", "the cat", "a dog"],
                                            ["sat down.", "ran off to the sea.", "barked."])
    got = [c["score"] for r in scored for c in r["candidates"]]
    assert got == pytest.approx(expected.tolist(), abs=1e-5)
    assert got[0] != got[1]  # each answer scored on its own, not one score for the row
