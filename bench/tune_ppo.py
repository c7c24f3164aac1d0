"""PPO's settings on the demo, measured over seeds on one round's inputs rather than chosen
by one run of the whole loop.

Given a policy a round trained (its directory under a data directory left by
bench/bench_first_loop.py), reruns its PPO stage in this process once per (setting, seed),
with the same SFT, reward model, prompts and pretraining text, and prints per setting the
mean and spread over seeds of what the watch and the campaign read: the KL to SFT and the
mean answer length on the test prompts (against SFT's), the RM's score, and the win rate
over SFT by the hidden rule the simulated labelers follow (each test prompt answered twice
by each model). Runs that differ only in a setting share their data: the comparison is
paired, where two runs of the whole loop differ in the labelers' interleaving too.

    .venv/bin/python bench/tune_ppo.py --policy /tmp/rlhf-first-loop-XXXX/models/ppo-job4 \
        --grid adaptive_kl=false,true --set kl_target=8 kl_horizon=200 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from tune_rm import _grid  # noqa: E402  (the same name=v1,v2 grammar)

SAMPLES = 2  # answers per test prompt and model for the hidden rule's win rate


def test_prompts(prompts_file: str) -> list[str]:
    rows = [json.loads(line) for line in Path(prompts_file).read_text().splitlines() if line]
    return [r.get("prompt") or r["text"] for r in rows if r.get("split") == "test"]


def measure(base: dict[str, Any], setting: dict[str, Any], seed: int, judge: Any,
            prompts: list[str], sft_answers: list[list[str]]) -> dict[str, Any]:
    from simulation.evaluate import policy_sampler, win_rate
    from training.contract import PPOConfig
    from training.ppo import train_ppo

    with tempfile.TemporaryDirectory(prefix="tune-ppo-") as tmp:
        values = {**base, **setting, "seed": seed, "tracker": "none", "cpu": True,
                  "out": str(Path(tmp) / "policy")}
        cfg = PPOConfig(**values)
        cpu = time.process_time()
        out = train_ppo(cfg)
        cpu = time.process_time() - cpu
        metrics = json.loads((out / "manifest.json").read_text())["metrics"]
        answers = [policy_sampler(out, cfg.max_new_tokens, seed=s)(prompts)
                   for s in range(SAMPLES)]
    wins = win_rate(judge, prompts * SAMPLES, sum(answers, []), sum(sft_answers, []))
    return {"test_kl": metrics.get("test_kl"), "kl": metrics.get("kl"),
            "length": metrics.get("test_mean_length"),
            "sft_length": metrics.get("sft_test_mean_length"),
            "rm": metrics.get("test_rm_score"), "beta": metrics.get("beta"),
            "win": wins.rate, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, required=True,
                        help="a policy directory a round trained: its manifest's config is rerun")
    parser.add_argument("--grid", nargs="*", default=[], help="name=v1,v2 (PPO settings)")
    parser.add_argument("--set", nargs="*", default=[], help="name=v, the same for every run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--judge", default="letter:e")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from simulation.evaluate import policy_sampler
    from simulation.judges import make_judge

    manifest = json.loads((args.policy / "manifest.json").read_text())
    base = {k: v for k, v in manifest["config"].items() if k not in ("out", "resume")}
    prompts = test_prompts(base["prompts"])
    sft_answers = [policy_sampler(base["policy_model"], base["max_new_tokens"], seed=s)(prompts)
                   for s in range(SAMPLES)]
    judge = make_judge(args.judge)
    fixed = _grid(args.set)[0]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"policy {args.policy} (SFT {base['policy_model']})\njudge {args.judge}; "
          f"{len(prompts)} test prompts x {SAMPLES}; fixed {fixed or '-'}")
    print(f"{'setting':<36} {'test KL':>13} {'length (SFT)':>17} {'RM':>12} "
          f"{'hidden win':>13} {'CPU s':>6}")
    runs = []
    for setting in _grid(args.grid):
        rows = [measure(base, {**fixed, **setting}, s, judge, prompts, sft_answers)
                for s in seeds]
        runs.append({"setting": {**fixed, **setting}, "runs": rows})

        def spread(key: str, rows: list[dict[str, Any]] = rows, fmt: str = ".2f") -> str:
            xs = [r[key] for r in rows if r[key] is not None]
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            return f"{statistics.mean(xs):{fmt}} ± {sd:{fmt}}"

        name = " ".join(f"{k}={v}" for k, v in setting.items()) or "as the round ran"
        sft_len = statistics.mean(r["sft_length"] for r in rows)
        print(f"{name:<36} {spread('test_kl', fmt='.1f'):>13} "
              f"{spread('length', fmt='.1f'):>11} ({sft_len:.1f}) {spread('rm'):>12} "
              f"{spread('win'):>13} {statistics.mean(r['cpu_s'] for r in rows):>6.0f}",
              flush=True)
        for s, r in zip(seeds, rows, strict=True):
            print(f"    seed {s}: test KL {r['test_kl']:.1f}, length {r['length']:.1f}, "
                  f"win {r['win']:.2f}, final β {r['beta']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
