"""Every hyperparameter of training/ reachable from a round, without importing torch.

The stages' config dataclasses live in training/contract.py (standard library only, like
training/records.py): their fields, types, defaults and one-line docs are read from the
classes, a round's values are validated against the annotations with Pydantic, and a stage
gets its settings as `python -m training STAGE --config file.json`. The paths (model and data
directories) are the app's to fill in.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from app.config import get_settings
from app.jobs.errors import JobError
from training import contract

STAGES = ("sft", "rm", "ppo")
# Filled in by the jobs from the registry and the round's snapshots.
MANAGED = frozenset({"base_model", "train_data", "out", "valid_data", "reward_model",
                     "demonstrations", "policy_model", "prompts", "cpu"})
# Settings that name a file the training child opens; they must name one the deployment
# owns (`check_path`): the worker often runs as root.
PATH_FIELDS = {"ppo": frozenset({"eval_prompts", "pretrain_data"})}
# Settings for the tiny CPU model, so that a whole round takes minutes and learns ("quick").
# Chosen by measurement on the demo (bench/bench_first_loop.py), not copied from the paper's
# 175B settings: a model of half a million parameters needs learning rates ~100x the paper's
# to move in tens of steps (at 1e-5 the RM stayed at chance and the policy at its SFT), and
# β = 0.1 keeps the KL to SFT near 10-15 nats on test prompts (at the paper's 0.02 it reached
# 15-29: the watch flags past 20). PPO's 48 steps, on one round's inputs with three seeds each
# (bench/tune_ppo.py): the hidden rule's win over SFT 0.98 ± 0.01 at test KL 12.8, where 24
# steps gave 0.96 ± 0.01 at 14.7 and β 0.2 gave 0.89-0.93; PPO is the cheapest stage here.
QUICK: dict[str, dict[str, Any]] = {
    "sft": {"epochs": 4, "batch_size": 8, "lr": 1e-3, "eval_prompts": 8,
            "eval_max_new_tokens": 32, "max_len": 256},
    # 5 % of 290 ranked prompts is 14: too few to read. Mean pooling: at the last
    # token the tiny RM reached 0.59 on held-out rankings where a bag-of-words model on the
    # same split reached 0.70 (labelers' agreement 0.74); averaged over tokens, 0.66.
    "rm": {"epochs": 4, "prompts_per_step": 8, "lr": 1e-3, "max_len": 256,
           "valid_fraction": 0.2, "pooling": "mean"},
    "ppo": {"steps": 48, "rollout_size": 16, "minibatch_size": 8, "ppo_epochs": 2,
            "lr": 1e-3, "value_lr": 3e-4, "ptx_coef": 0.3, "kl_coef": 0.1, "max_new_tokens": 32,
            "max_prompt_len": 64, "eval_size": 16, "test_size": 32, "heldout_texts": 8,
            "ptx_batch_size": 4, "ptx_max_len": 64, "eval_every": 6},
}
# The knobs the trigger form shows first (all others are under "more").
MAIN_KNOBS = {"sft": ("epochs", "lr", "batch_size"), "rm": ("epochs", "lr", "prompts_per_step"),
              "ppo": ("steps", "kl_coef", "ptx_coef", "rollout_size", "lr")}


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # str | int | float | bool, "| None" when optional
    default: Any
    doc: str


@lru_cache
def fields(stage: str) -> dict[str, Field]:
    """The stage's config fields (its base classes' first), from training/contract.py."""
    return {f.name: Field(f.name, str(f.type), f.default, contract.doc(f))
            for f in dataclasses.fields(contract.STAGE_CONFIGS[stage])}


@lru_cache
def _adapter(stage: str, name: str) -> TypeAdapter[Any]:
    """Pydantic's validator for one field's annotation (NaN and infinity refused)."""
    hint = typing.get_type_hints(contract.STAGE_CONFIGS[stage])[name]
    return TypeAdapter(hint, config=ConfigDict(allow_inf_nan=False))


def preset() -> str:
    """quick on the tiny model (no RLHF_BASE_MODEL), paper otherwise, unless set."""
    chosen = get_settings().train_preset
    if chosen != "auto":
        return chosen
    return "quick" if not get_settings().base_model else "paper"


def _coerce(stage: str, f: Field, value: Any) -> Any:
    # Strict: "3" is not an int nor True a number; an int is a float (JSON writes 1.0 as 1).
    try:
        return _adapter(stage, f.name).validate_python(value, strict=True)
    except ValidationError:
        base = f.type.replace(" | None", "").strip()
        raise JobError(f"{stage}.{f.name} must be a {base}, not {value!r}.", 422) from None


def validate_config(config: dict[str, Any], stages: list[str]) -> dict[str, dict[str, Any]]:
    """Check a round's {stage: {field: value}} against training/'s fields (422 with why)."""
    if not isinstance(config, dict):
        raise JobError("config must be an object of {stage: {field: value}}.", 422)
    clean: dict[str, dict[str, Any]] = {}
    for stage, values in config.items():
        if stage not in STAGES:
            raise JobError(f"config names an unknown stage {stage!r}; stages: "
                           f"{', '.join(STAGES)}.", 422)
        if not isinstance(values, dict):
            raise JobError(f"config.{stage} must be an object of field: value.", 422)
        known = fields(stage)
        for name, value in values.items():
            if name in MANAGED:
                raise JobError(f"{stage}.{name} is set by the round itself (from the registry "
                               "and the snapshots).", 422)
            if name not in known:
                raise JobError(f"{stage} has no setting {name!r}; see `python -m training "
                               f"{stage} --help`.", 422)
            value = _coerce(stage, known[name], value)
            if name in PATH_FIELDS.get(stage, ()) and value:
                value = check_path(f"{stage}.{name}", value)
            clean.setdefault(stage, {})[name] = value
    return clean


def path_roots() -> list[Path]:
    """The directories a round's config may name files in: the deployment's own."""
    settings = get_settings()
    return [Path(p).resolve() for p in (settings.data_dir, settings.exports_dir,
                                        settings.models_dir, *settings.train_path_roots)]


def check_path(field: str, value: str) -> str:
    """The file a config field names, resolved (symbolic links and `..` followed); a 422
    naming the field unless it lies inside `path_roots()`."""
    resolved = Path(value).resolve()
    roots = path_roots()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise JobError(f"{field} must name a file inside {', '.join(map(str, roots))} "
                       "(or a directory listed in RLHF_TRAIN_PATH_ROOTS); "
                       f"{value!r} is outside them.", 422)
    return str(resolved)  # the child opens what was checked, whatever its working directory


def overrides(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """What a stage changes from training's defaults: the preset, then the job's config."""
    values = dict(QUICK.get(stage, {})) if preset() == "quick" else {}
    values.update(config)
    return values


def effective(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """The values a stage runs with: training's defaults < the preset < the job's config."""
    values = {name: f.default for name, f in fields(stage).items() if name not in MANAGED}
    values.update(overrides(stage, config))
    return values


def config_argv(stage: str, values: dict[str, Any], path: Path) -> list[str]:
    """Write the stage's settings to `path`; the `python -m training` arguments that run it."""
    contract.write_config(values, path)
    return [stage, "--config", str(path)]


def argv(stage: str, values: dict[str, Any]) -> list[str]:
    """The `python -m training STAGE` flags for these values (for people and benchmarks)."""
    out = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + name.replace("_", "-"))
        elif value is not None:
            out += [flag, str(value)]
    return out
