"""Every hyperparameter of training/ reachable from a round, without importing torch.

The web process must not import torch, so the stages' config dataclasses are read from
their source with `ast`: field names, types and defaults, exactly as `python -m training`
has them. The paths (model and data directories) are the app's to fill in.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.jobs.errors import JobError

STAGES = ("sft", "rm", "ppo")
SOURCES = {"sft": ("sft.py", "SFTConfig"), "rm": ("reward.py", "RewardConfig"),
           "ppo": ("ppo.py", "PPOConfig")}
# Filled in by the jobs from the registry and the round's snapshots.
MANAGED = frozenset({"base_model", "train_data", "out", "valid_data", "reward_model",
                     "demonstrations", "policy_model", "prompts", "cpu"})
# Settings that name a file the training child opens; they must name one the deployment
# owns (`check_path`): the worker often runs as root.
PATH_FIELDS = {"ppo": frozenset({"eval_prompts", "pretrain_data"})}
# Small settings for the tiny CPU model, so that a whole round takes minutes ("quick").
QUICK: dict[str, dict[str, Any]] = {
    "sft": {"epochs": 4, "batch_size": 8, "eval_prompts": 8, "eval_max_new_tokens": 24,
            "max_len": 256},
    "rm": {"prompts_per_step": 8, "max_len": 256},
    "ppo": {"steps": 8, "rollout_size": 16, "minibatch_size": 8, "ppo_epochs": 2,
            "max_new_tokens": 24, "max_prompt_len": 128, "heldout_texts": 16,
            "ptx_batch_size": 4, "ptx_max_len": 96, "eval_every": 2},
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
    """The stage's config fields (its base classes' first), read from training/'s source."""
    return _class_fields(SOURCES[stage][1])


def _find_class(name: str) -> tuple[ast.ClassDef, list[str]]:
    import training

    for path in sorted(Path(training.__file__).resolve().parent.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if f"class {name}" not in source:
            continue
        for node in ast.parse(source).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return node, source.splitlines()
    raise LookupError(f"training/ defines no class {name}")


def _class_fields(name: str) -> dict[str, Field]:
    node, lines = _find_class(name)
    out: dict[str, Field] = {}
    for base in node.bases:
        if isinstance(base, ast.Name):
            out.update(_class_fields(base.id))
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            try:
                default = ast.literal_eval(item.value) if item.value is not None else None
            except ValueError:  # a computed default: training fills it in itself
                default = None
            line = lines[item.lineno - 1]
            doc = line.split("#", 1)[1].strip() if "#" in line else ""
            out[item.target.id] = Field(item.target.id, ast.unparse(item.annotation),
                                        default, doc)
    return out


def preset() -> str:
    """quick on the tiny model (no RLHF_BASE_MODEL), paper otherwise, unless set."""
    chosen = get_settings().train_preset
    if chosen != "auto":
        return chosen
    return "quick" if not get_settings().base_model else "paper"


def _coerce(stage: str, f: Field, value: Any) -> Any:
    base = f.type.replace(" | None", "").strip()
    if value is None and "None" in f.type:
        return None
    ok = {"bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, int | float) and not isinstance(value, bool),
          "str": isinstance(value, str)}.get(base, False)
    if not ok:
        raise JobError(f"{stage}.{f.name} must be a {base}, not {value!r}.", 422)
    return float(value) if base == "float" else value


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


def argv(stage: str, values: dict[str, Any]) -> list[str]:
    """The `python -m training STAGE` flags for these values."""
    out = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + name.replace("_", "-"))
        elif value is not None:
            out += [flag, str(value)]
    return out
