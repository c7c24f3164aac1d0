"""Batched generation of K candidates per prompt, best-of-N with a reward model.

Generation goes through one interface, `Sampler.sample(prompts, k) -> [[text] * k]`:
`HFSampler` (transformers' `generate`, the default) and `VLLMSampler` (`--backend vllm`,
where vLLM is installed on a GPU machine; the prompt is laid out with the model directory's
chat template, as in training). `--backend auto` takes vLLM where it is installed and a GPU
is present, transformers otherwise; PPO's rollouts choose their engine the same way
(training/rollouts.py). Output files use the app's candidate import format, one prompt per line:
`{"prompt": str, "prompt_id"?: int, "candidates": [{"text": str, "model": str}, …]}`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from training.contract import SampleConfig, ScoreConfig
from training.data import RankingCollator, prompt_batch, read_rows
from training.models import load_policy, load_reward_model, load_tokenizer, rm_scores
from training.records import GroupedRecord

RewardFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]  # (prompts, responses) -> (N,)


def response_mask(responses: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 on tokens up to and including the first eos, 0 after; (B, T) -> (B, T)."""
    is_eos = (responses == eos_id).long()
    before_or_at_first_eos = (is_eos.cumsum(1) - is_eos) == 0
    return before_or_at_first_eos.long()


@torch.no_grad()
def generate_ids(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    max_prompt_len: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    do_sample: bool = True,
) -> dict[str, torch.Tensor]:
    """Sample one response per prompt: prompt ids (B, P), response ids and mask (B, T)."""
    batch = prompt_batch(tok, prompts, max_prompt_len)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    seqs = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        top_k=0,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    responses = seqs[:, batch["input_ids"].shape[1] :]  # (B, T)
    return {
        "prompt_ids": batch["input_ids"],
        "prompt_mask": batch["attention_mask"],
        "response_ids": responses,
        "response_mask": response_mask(responses, tok.eos_token_id),
    }


def decode(tok: Any, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Response texts without special tokens; ids/mask (B, T)."""
    return [
        tok.decode(row[m.bool()], skip_special_tokens=True)
        for row, m in zip(ids, mask, strict=True)
    ]


def sample(model: Any, tok: Any, prompts: Sequence[str], k: int, **gen: Any) -> list[list[str]]:
    """K sampled responses for each prompt (prompts repeated K times in one batch)."""
    repeated = [p for p in prompts for _ in range(k)]
    out = generate_ids(model, tok, repeated, **gen)
    texts = decode(tok, out["response_ids"], out["response_mask"])
    return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]


def rm_reward_fn(
    rm: str | Path | Any, tok: Any | None = None, max_len: int = 512, batch_size: int = 32
) -> RewardFn:
    """A (prompts, responses) -> scores (N,) function from an RM directory or loaded model.

    Text is laid out exactly as in reward-model training (prompt template, eos).
    """
    if isinstance(rm, (str, Path)):
        tok = load_tokenizer(rm)
        rm = load_reward_model(rm, tok).eval()
    collate = RankingCollator(tok, max_len)

    @torch.no_grad()
    def score(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        pairs = list(zip(prompts, responses, strict=True))
        device = next(rm.parameters()).device
        out = []
        for i in range(0, len(pairs), batch_size):
            batch = collate([GroupedRecord(p, [r], [[0]]) for p, r in pairs[i : i + batch_size]])
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            out.append(rm_scores(rm, ids, mask).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    return score


def best_of_n(
    model: Any, tok: Any, reward: RewardFn, prompts: Sequence[str], n: int, **gen: Any
) -> list[tuple[str, float]]:
    """For each prompt, the highest-scoring of n samples and its score (`model` may be a
    Sampler)."""
    if isinstance(model, Sampler):
        samples = model.sample(prompts, n)
    else:
        samples = sample(model, tok, prompts, n, **gen)
    best = []
    for prompt, texts in zip(prompts, samples, strict=True):
        scores = reward([prompt] * n, texts)
        i = int(scores.argmax())
        best.append((texts[i], float(scores[i])))
    return best


class Sampler:
    """K sampled responses per prompt; implementations differ only in the engine."""

    def sample(self, prompts: Sequence[str], k: int) -> list[list[str]]:
        raise NotImplementedError


class HFSampler(Sampler):
    """transformers' `generate` on a loaded model (left padding, pure sampling)."""

    def __init__(self, model: Any, tok: Any, **gen: Any):
        self.model, self.tok, self.gen = model, tok, gen

    def sample(self, prompts: Sequence[str], k: int) -> list[list[str]]:
        return sample(self.model, self.tok, prompts, k, **self.gen)


class VLLMSampler(Sampler):
    """vLLM's engine on a model directory; prompts laid out with its chat template."""

    def __init__(self, model_dir: str, tok: Any, seed: int = 0, **gen: Any):
        try:
            from vllm import LLM, SamplingParams  # only where vLLM is installed
        except ImportError as e:
            raise RuntimeError("--backend vllm needs vLLM installed (a GPU machine)") from e

        self.tok, self.params_cls = tok, SamplingParams
        self.llm = LLM(model=str(model_dir), seed=seed)
        self.gen = gen

    def sample(self, prompts: Sequence[str], k: int) -> list[list[str]]:
        from training.data import encode_prompt

        params = self.params_cls(
            n=k,
            max_tokens=self.gen.get("max_new_tokens", 64),
            temperature=self.gen.get("temperature", 1.0),
            top_p=self.gen.get("top_p", 1.0),
            stop_token_ids=[self.tok.eos_token_id],
        )
        max_prompt = self.gen.get("max_prompt_len", 256)
        inputs = [{"prompt_token_ids": encode_prompt(self.tok, p, max_prompt)} for p in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        return [[c.text for c in out.outputs] for out in outputs]


def vllm_installed() -> bool:
    """Whether the vllm package can be found (a broken or half-imported install: no)."""
    import importlib.util

    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


def vllm_usable() -> bool:
    """Whether vLLM is installed and has a GPU to run on (what `--backend auto` asks)."""
    return vllm_installed() and torch.cuda.is_available()


def make_sampler(cfg: SampleConfig, tok: Any) -> Sampler:
    """The sampler cfg.backend names, with cfg's generation settings."""
    gen = dict(
        max_new_tokens=cfg.max_new_tokens,
        max_prompt_len=cfg.max_prompt_len,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
    )
    backend = cfg.backend
    if backend == "auto":
        backend = "vllm" if vllm_usable() else "hf"
    if backend == "vllm":
        return VLLMSampler(cfg.model, tok, seed=cfg.seed, **gen)
    if backend != "hf":
        raise ValueError(f"unknown sampling backend {cfg.backend!r} (hf, vllm or auto)")
    tok.padding_side = "left"
    return HFSampler(load_policy(cfg.model, tok).eval(), tok, **gen)


def write_candidates(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write candidate-import JSONL via a temp file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def run_sampling(cfg: SampleConfig, best_of: bool = False, callback: Any = None) -> Path:
    """Sample K candidates (or the best of N) for every prompt in cfg.prompts; write cfg.out."""
    set_seed(cfg.seed)
    if best_of and not cfg.reward_model:
        raise ValueError("best-of-N needs a reward model (--reward-model DIR)")
    tok = load_tokenizer(cfg.model)
    sampler = make_sampler(cfg, tok)
    reward = rm_reward_fn(cfg.reward_model) if best_of else None
    rows = read_rows(cfg.prompts)
    label = cfg.model_name or Path(cfg.model).name
    out = []
    bar = tqdm(total=len(rows), desc="best-of-N" if best_of else "sampling")
    for i in range(0, len(rows), cfg.batch_size):
        chunk = rows[i : i + cfg.batch_size]
        prompts = [str(r.get("prompt", r.get("text"))) for r in chunk]
        if reward is not None:
            texts = [[t] for t, _ in best_of_n(sampler, tok, reward, prompts, cfg.n)]
        else:
            texts = sampler.sample(prompts, cfg.k)
        for row, prompt, cands in zip(chunk, prompts, texts, strict=True):
            pid = row.get("prompt_id")
            out.append(
                {
                    "prompt": prompt,
                    **({"prompt_id": pid} if pid is not None else {}),
                    "candidates": [{"text": t, "model": label} for t in cands],
                }
            )
        bar.update(len(chunk))
        if callback:
            callback(min(i + cfg.batch_size, len(rows)), len(rows), {})
    bar.close()
    return write_candidates(cfg.out, out)


def run_scoring(cfg: ScoreConfig) -> Path:
    """Score every candidate of cfg.data with the reward model (laid out as in its training);
    write the rows to cfg.out with a `score` on each candidate."""
    reward = rm_reward_fn(cfg.reward_model, max_len=cfg.max_len, batch_size=cfg.batch_size)
    rows = read_rows(cfg.data)
    flat = [(str(row.get("prompt", row.get("text"))), str(c["text"]))
            for row in rows for c in row.get("candidates") or []]
    scores = reward([p for p, _ in flat], [t for _, t in flat]).tolist() if flat else []
    it = iter(scores)
    for row in rows:
        for cand in row.get("candidates") or []:
            cand["score"] = float(next(it))
    return write_candidates(cfg.out, rows)
