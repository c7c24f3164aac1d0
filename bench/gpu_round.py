"""A round on one GPU: a 0.5–1B Llama-style model, LoRA + bf16, ours against TRL.

Needs a CUDA GPU (it refuses to run without one) and nothing from the network: without
`--model` it builds a ~0.7B Llama (hidden 1536, 28 layers, grouped-query attention, the
small Metaspace BPE and chat template of training/small_llama.py) from a config with random
weights, which is enough for throughput. With `--model DIR` it uses a local model instead.
It prints one JSON object:

  - SFT: tokens/s (ours, TRL's SFTTrainer on the same prompt/completion rows), ratio;
  - RM: comparisons/s and tokens/s (ours K-way, TRL's pairwise RewardTrainer), ratio;
  - PPO: episodes/s and the share of its time spent generating (ours; rollouts through
    transformers' generate, or vLLM on the same GPU with `--rollout-backend vllm|auto`: the
    engine that ran is reported, and weight pushes count as generation time);
  - peak GPU memory of every stage.

    .venv/bin/python bench/gpu_round.py [--model DIR] [--lora-r 16] [--max-len 512]
                                        [--rollout-backend hf|vllm|auto]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from training.contract import SmallLlamaConfig  # noqa: E402
from training.data import encode_pair  # noqa: E402
from training.models import load_tokenizer  # noqa: E402
from training.outputs import read_manifest  # noqa: E402
from training.ppo import PPOConfig, train_ppo  # noqa: E402
from training.records import PromptRecord, SFTRecord, comparisons_from_groups, write_jsonl  # noqa: E402
from training.reward import RewardConfig, train_reward_model  # noqa: E402
from training.sft import SFTConfig, train_sft  # noqa: E402
from training.small_llama import build_small_llama  # noqa: E402
from training.tiny import synthetic_corpus, synthetic_rankings  # noqa: E402

HALF_B = SmallLlamaConfig(hidden_size=1536, n_layer=28, n_head=12, n_kv_head=2,
                          intermediate_size=4096, max_positions=2048, pretrain_steps=0)


def measured(fn: Any) -> tuple[Any, float, float]:
    """(result, wall seconds, peak GPU memory in GiB) of fn()."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - started, torch.cuda.max_memory_allocated() / 2**30


def last_metrics(model_dir: Path) -> dict[str, Any]:
    """Every metric of the run's metrics.jsonl, the latest value of each."""
    merged: dict[str, Any] = {}
    for line in (model_dir / "metrics.jsonl").read_text().splitlines():
        merged.update(json.loads(line))
    return merged


def write_data(root: Path, n: int) -> None:
    """Demonstrations, K = 4 rankings and prompts, all from the toy English."""
    texts = synthetic_corpus(n, seed=7)
    write_jsonl(root / "sft.jsonl", [SFTRecord(prompt=f"write about item {i}.", completion=t)
                                     for i, t in enumerate(texts)])
    write_jsonl(root / "rank.jsonl", synthetic_rankings(n, 4, seed=8))
    write_jsonl(root / "prompts.jsonl", [PromptRecord(prompt_id=i, text=f"describe the cat {i}.")
                                         for i in range(n)])


def trl_sft(base: Path, root: Path, args: argparse.Namespace) -> float:
    """TRL's SFTTrainer on the same rows, LoRA + bf16; tokens/s over its train()."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    rows = [json.loads(x) for x in (root / "sft.jsonl").read_text().splitlines()]
    data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]}
                              for r in rows])
    cfg = TRLSFTConfig(output_dir=str(root / "trl_sft"), per_device_train_batch_size=16,
                       num_train_epochs=1, bf16=True, max_length=args.max_len,
                       report_to="none", save_strategy="no", logging_strategy="no",
                       packing=False, use_cpu=not torch.cuda.is_available())
    trainer = SFTTrainer(model=str(base), args=cfg, train_dataset=data,
                         peft_config=LoraConfig(r=args.lora_r, target_modules="all-linear"))
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    started = time.perf_counter()
    trainer.train()
    return tokens / (time.perf_counter() - started)


def trl_rm(base: Path, root: Path, args: argparse.Namespace) -> tuple[float, float]:
    """TRL's pairwise RewardTrainer on our rankings' pairs; (comparisons/s, tokens/s)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    tok = load_tokenizer(base)
    ranks = [json.loads(x) for x in (root / "rank.jsonl").read_text().splitlines()]
    rows = [{"chosen_ids": encode_pair(tok, r["prompt"], r["responses"][w], args.max_len)[0],
             "rejected_ids": encode_pair(tok, r["prompt"], r["responses"][lo], args.max_len)[0]}
            for r in ranks for w, lo in comparisons_from_groups(r["ranking"])]
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1,
                                                               dtype=torch.bfloat16)
    model.config.pad_token_id = tok.pad_token_id
    cfg = TRLRewardConfig(output_dir=str(root / "trl_rm"), per_device_train_batch_size=16,
                          num_train_epochs=1, bf16=True, report_to="none", save_strategy="no",
                          logging_strategy="no", max_length=None,
                          use_cpu=not torch.cuda.is_available())
    trainer = RewardTrainer(model=model, args=cfg, processing_class=tok,
                            train_dataset=Dataset.from_list(rows),
                            peft_config=LoraConfig(r=args.lora_r, target_modules="all-linear",
                                                   task_type="SEQ_CLS"))
    tokens = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return len(rows) / seconds, tokens / seconds


def ours(base: Path, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """SFT, RM and PPO of ours with LoRA + bf16: throughput, generation share, peak memory."""
    scale = {"lora_r": args.lora_r, "bf16": True, "tracker": "none"}
    sft, sft_s, sft_mem = measured(lambda: train_sft(SFTConfig(
        base_model=str(base), train_data=str(root / "sft.jsonl"), out=str(root / "sft"),
        epochs=1, batch_size=16, max_len=args.max_len, select_by="last", **scale)))
    rm, rm_s, rm_mem = measured(lambda: train_reward_model(RewardConfig(
        base_model=str(base), train_data=str(root / "rank.jsonl"), out=str(root / "rm"),
        prompts_per_step=8, max_len=args.max_len, **scale)))
    ppo, ppo_s, ppo_mem = measured(lambda: train_ppo(PPOConfig(
        policy_model=str(sft), reward_model=str(rm), prompts=str(root / "prompts.jsonl"),
        out=str(root / "policy"), ptx_coef=0.0, steps=4, rollout_size=64, minibatch_size=16,
        ppo_epochs=2, max_new_tokens=64, heldout_texts=0, rollout_backend=args.rollout_backend,
        vllm_gpu_memory=args.vllm_gpu_memory, **scale)))
    tok = load_tokenizer(base)
    ranks = [json.loads(x) for x in (root / "rank.jsonl").read_text().splitlines()]
    rm_tokens = sum(len(encode_pair(tok, r["prompt"], t, args.max_len)[0])
                    for r in ranks for t in r["responses"])
    s, r, p = last_metrics(sft), last_metrics(rm), last_metrics(ppo)
    return {
        "sft": {"tokens_per_s": s["tokens_per_s"], "wall_s": sft_s, "peak_gib": sft_mem},
        "rm": {"comparisons_per_s": r["comparisons_per_s"],
               "tokens_per_s": rm_tokens / read_manifest(rm)["metrics"]["train_seconds"],
               "wall_s": rm_s, "peak_gib": rm_mem},
        "ppo": {"episodes_per_s": p["episodes_per_s"], "gen_time_share": p["gen_time_share"],
                "rollout_backend": (read_manifest(ppo) or {}).get("rollout_backend"),
                "wall_s": ppo_s, "peak_gib": ppo_mem},
    }


def main() -> None:
    """Build or load the model, run our stages and TRL's, print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a local causal-LM directory (default: build ~0.7B)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--rows", type=int, default=512, help="demonstrations and rankings")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--rollout-backend", default="hf", choices=("hf", "vllm", "auto"),
                        help="PPO's rollout engine (vllm: an engine on the same GPU)")
    parser.add_argument("--vllm-gpu-memory", type=float, default=0.3,
                        help="share of GPU memory the vLLM rollout engine reserves")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu_round.py needs a CUDA GPU (the CPU figures are "
                         "bench/bench_training.py's)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = Path(args.model) if args.model else build_small_llama(root / "base", HALF_B)
        write_data(root, args.rows)
        result: dict[str, Any] = {"device": torch.cuda.get_device_name(),
                                  "model": str(args.model or "built ~0.7B llama"), **ours(
                                      base, root, args)}
        if not args.skip_trl:
            trl_tps = trl_sft(base, root, args)
            trl_cps, trl_rm_tps = trl_rm(base, root, args)
            result["trl"] = {"sft_tokens_per_s": trl_tps, "rm_comparisons_per_s": trl_cps,
                             "rm_tokens_per_s": trl_rm_tps}
            result["ratio"] = {"sft": result["sft"]["tokens_per_s"] / trl_tps,
                               "rm_comparisons": result["rm"]["comparisons_per_s"] / trl_cps}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
