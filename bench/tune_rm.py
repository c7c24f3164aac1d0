"""The reward model's settings on the demo, measured over seeds rather than chosen by one run.

Given the rankings a round trained on and its SFT model (a data directory left by
bench/bench_first_loop.py, or the two paths), trains the RM once per (setting, seed) in this
process and prints, per setting, the mean and spread over seeds of its held-out accuracy
against the labelers' rankings (what the round's page shows) and against the hidden rule the
simulated labelers follow (what the RM should learn), with the CPU seconds it took. Each seed
holds out a different fifth of the prompts, so the mean is a cross-validated figure: one
split's 23 held-out prompts move the accuracy by ±0.03 on their own.

    .venv/bin/python bench/tune_rm.py --data-dir /tmp/rlhf-first-loop-XXXX \
        --grid epochs=4,8,12 --seeds 0,1,2,3,4 [--set lr=3e-4] [--judge letter:e]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _grid(specs: list[str]) -> list[dict[str, Any]]:
    """name=v1,v2 ... → every combination as {name: value}."""
    axes = [(name, [_value(v) for v in values.split(",")])
            for name, _, values in (s.partition("=") for s in specs)]
    return [dict(zip([a for a, _ in axes], combo, strict=True))
            for combo in itertools.product(*[vals for _, vals in axes])] or [{}]


def find_inputs(data_dir: Path) -> tuple[Path, Path]:
    """The newest round's rankings snapshot and SFT model under a data directory."""
    def of_kind(kind: str) -> list[Path]:
        dirs = [p.parent for p in data_dir.rglob("manifest.json")
                if json.loads(p.read_text()).get("kind") == kind]
        return sorted(dirs, key=lambda p: p.stat().st_mtime)

    rankings = [next(d.glob("*.jsonl")) for d in of_kind("grouped")]
    sft = of_kind("sft")
    if not rankings or not sft:
        raise SystemExit(f"no rankings snapshot or SFT model under {data_dir}")
    return rankings[-1], sft[-1]


def hidden_accuracy(rm_dir: Path, valid: list, judge: Any, max_len: int) -> float:
    """Share of the held-out responses' pairs the RM orders as the hidden rule does (pairs the
    rule ties are left out)."""
    from training.sampling import rm_reward_fn

    score = rm_reward_fn(rm_dir, max_len=max_len)
    right = total = 0
    for record in valid:
        truth = judge.scores(record.prompt, record.responses)
        rm = score([record.prompt] * len(record.responses), record.responses).tolist()
        for i, j in itertools.combinations(range(len(truth)), 2):
            if truth[i] == truth[j]:
                continue
            total += 1
            right += (truth[i] > truth[j]) == (rm[i] > rm[j])
    return right / max(total, 1)


def measure(setting: dict[str, Any], seed: int, rankings: Path, sft: Path, judge: Any) -> dict:
    from app.rounds.stage_config import QUICK
    from training.contract import RewardConfig
    from training.reward import load_splits, train_reward_model

    with tempfile.TemporaryDirectory(prefix="tune-rm-") as tmp:
        values = {**QUICK["rm"], **setting, "seed": seed, "tracker": "none", "cpu": True}
        cfg = RewardConfig(base_model=str(sft), train_data=str(rankings),
                           out=str(Path(tmp) / "rm"), **values)
        cpu = time.process_time()
        out = train_reward_model(cfg)
        cpu = time.process_time() - cpu
        metrics = json.loads((out / "manifest.json").read_text())["metrics"]
        _, valid = load_splits(cfg)
        return {"vs_labels": metrics.get("val_accuracy"),
                "vs_hidden": hidden_accuracy(out, valid, judge, cfg.max_len),
                "cpu_s": cpu, "valid": len(valid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--rankings", type=Path)
    parser.add_argument("--sft", type=Path)
    parser.add_argument("--grid", nargs="*", default=[], help="name=v1,v2 (RM settings)")
    parser.add_argument("--set", nargs="*", default=[], help="name=v, the same for every run")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--judge", default="letter:e")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from simulation.judges import make_judge

    if args.data_dir:
        rankings, sft = find_inputs(args.data_dir)
    else:
        rankings, sft = args.rankings, args.sft
    fixed = _grid(args.set)[0]
    judge = make_judge(args.judge)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"rankings {rankings}\nSFT {sft}\njudge {args.judge}; fixed {fixed or '-'}")
    print(f"{'setting':<32} {'vs labels (held out)':>22} {'vs hidden rule':>18} {'CPU s':>7}")
    runs = []
    for setting in _grid(args.grid):
        rows = [measure({**fixed, **setting}, s, rankings, sft, judge) for s in seeds]
        runs.append({"setting": setting, "runs": rows})

        def spread(key: str, rows: list[dict] = rows) -> str:
            xs = [r[key] for r in rows if r[key] is not None]
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            return f"{statistics.mean(xs):.3f} ± {sd:.3f}"

        name = " ".join(f"{k}={v}" for k, v in setting.items()) or "preset"
        print(f"{name:<32} {spread('vs_labels'):>22} {spread('vs_hidden'):>18} "
              f"{statistics.mean(r['cpu_s'] for r in rows):>7.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
