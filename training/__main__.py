"""`python -m training tiny|small-llama|sft|rm|ppo|dpo|sample|bon …`: every config field is a flag.

Flags are generated from the stage's config dataclass in training/contract.py (`base_model`
-> `--base-model`), with the field's one-line doc as help, so the CLI and the Python API
cannot drift. `--config file.json` reads the same fields from a JSON object (flags given as
well win); the app hands its stages their settings that way. Runs under `accelerate launch
-m training …` unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from training.contract import (
    CANCELLED_EXIT,
    DPOConfig,
    PPOConfig,
    RewardConfig,
    SampleConfig,
    ScoreConfig,
    SFTConfig,
    SmallLlamaConfig,
    TinyConfig,
    doc,
    read_config,
)
from training.dpo import train_dpo
from training.outputs import StageCancelled, stream_events
from training.ppo import train_ppo
from training.reward import train_reward_model
from training.sampling import run_sampling, run_scoring
from training.sft import train_sft
from training.small_llama import build_small_llama
from training.tiny import build_tiny

TYPES: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float}


def add_config_flags(
    parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()
) -> None:
    """One --flag per dataclass field, typed from its annotation, default from the config."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        type_name = str(f.type).replace(" | None", "").strip()
        help_text = f"{doc(f)} (default: {f.default})".replace("%", "%%")
        if type_name == "bool":
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text
            )
        else:
            parser.add_argument(flag, type=TYPES[type_name], default=f.default, help=help_text)


def config_from(args: argparse.Namespace, cls: type) -> Any:
    """Build the config dataclass from parsed flags."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def run_tiny(args: argparse.Namespace) -> Any:
    """Build the tiny offline base model."""
    return build_tiny(args.out, config_from(args, TinyConfig))


COMMANDS: dict[str, tuple[type, Callable[[argparse.Namespace], Any], str]] = {
    "tiny": (TinyConfig, run_tiny, "build a tiny offline base model + tokenizer"),
    "small-llama": (
        SmallLlamaConfig,
        lambda a: build_small_llama(a.out, config_from(a, SmallLlamaConfig)),
        "build a small Llama-style offline base model (BPE tokenizer, chat template)",
    ),
    "sft": (
        SFTConfig,
        lambda a: train_sft(config_from(a, SFTConfig)),
        "supervised fine-tuning on demonstrations",
    ),
    "rm": (
        RewardConfig,
        lambda a: train_reward_model(config_from(a, RewardConfig)),
        "train the K-way reward model on rankings",
    ),
    "ppo": (
        PPOConfig,
        lambda a: train_ppo(config_from(a, PPOConfig)),
        "PPO / PPO-ptx against the reward model",
    ),
    "dpo": (
        DPOConfig,
        lambda a: train_dpo(config_from(a, DPOConfig)),
        "DPO on the rankings (no reward model or PPO; K-way like the RM)",
    ),
    "sample": (
        SampleConfig,
        lambda a: run_sampling(config_from(a, SampleConfig)),
        "sample K candidates per prompt (candidate import JSONL)",
    ),
    "score": (
        ScoreConfig,
        lambda a: run_scoring(config_from(a, ScoreConfig)),
        "score given answers with a reward model (candidate import JSONL in and out)",
    ),
    "bon": (
        SampleConfig,
        lambda a: run_sampling(config_from(a, SampleConfig), best_of=True),
        "best-of-N with a reward model (candidate import JSONL)",
    ),
}


def build_parser(file_values: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The argument parser with one subcommand per stage (`file_values`: a --config file's
    fields, as the defaults of the command it was given to)."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--events", action="store_true",
        help="print one JSON line per step on stdout; SIGTERM stops at the next step (exit 3)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (cls, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in ("tiny", "small-llama"):
            p.add_argument("--out", required=True, help="directory to write the model to")
        p.add_argument("--config", metavar="FILE.json",
                       help="read these settings from a JSON object {field: value}; "
                            "flags given as well win")
        add_config_flags(p, cls)
        p.set_defaults(**(file_values or {}).get(name, {}))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with a --config file's values under the flags given."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.config:
        return args
    try:
        values = read_config(COMMANDS[args.command][0], args.config)
    except (OSError, ValueError) as exc:  # a missing file, bad JSON, an unknown field
        parser.error(f"--config {args.config}: {exc}")
    return build_parser({args.command: values}).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the stage; prints the output path."""
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.events:
        stream_events()
    try:
        out = COMMANDS[args.command][1](args)
    except StageCancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return CANCELLED_EXIT
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
