"""The stages' settings as data: docs per field, flags and --config files from one class."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from training import contract
from training.__main__ import COMMANDS, build_parser, config_from, parse_args

CLASSES = {cls for cls, _, _ in COMMANDS.values()}


def test_every_field_of_every_stage_has_a_one_line_doc():
    for cls in CLASSES:
        for f in dataclasses.fields(cls):
            assert contract.doc(f).strip(), f"{cls.__name__}.{f.name} has no doc"
            assert "\n" not in contract.doc(f)


@pytest.mark.slow  # a child process
def test_contract_imports_only_the_standard_library():
    code = ("import sys, training.contract; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'transformers', 'pydantic', 'app')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_help_of_each_flag_is_the_fields_doc():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    ppo = sub.choices["ppo"]  # type: ignore[attr-defined]
    helps = {a.dest: a.help for a in ppo._actions}
    for f in dataclasses.fields(contract.PPOConfig):
        assert helps[f.name].startswith(contract.doc(f).replace("%", "%%")), f.name


def test_config_file_sets_fields_and_flags_given_as_well_win(tmp_path):
    path = contract.write_config({"epochs": 2, "lr": 0.5, "cpu": True, "valid_data": None,
                                  "out": str(tmp_path / "sft")}, tmp_path / "sft.json")
    args = parse_args(["sft", "--config", str(path), "--epochs", "3"])
    cfg = config_from(args, contract.SFTConfig)
    assert (cfg.epochs, cfg.lr, cfg.cpu, cfg.out) == (3, 0.5, True, str(tmp_path / "sft"))
    assert cfg.batch_size == contract.SFTConfig().batch_size  # untouched: the default


@pytest.mark.parametrize("values, why", [
    ({"epoch": 2}, "SFTConfig has no field 'epoch'"),
    ({"epochs": "2"}, "epochs must be int, not '2'"),
    ({"lr": True}, "lr must be float, not True"),
    ({"dropout": "x"}, "dropout must be float | None"),
    ([1, 2], "one JSON object"),
])
def test_config_file_with_a_bad_field_stops_before_training_and_says_why(
        tmp_path, capsys, values, why):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(values))
    with pytest.raises(SystemExit) as stopped:
        parse_args(["sft", "--config", str(path)])
    assert stopped.value.code == 2
    assert why in capsys.readouterr().err


def test_int_for_a_float_field_becomes_a_float_and_none_fits_only_optional_fields():
    assert contract.check_value(contract.PPOConfig, "kl_coef", 1) == 1.0
    assert isinstance(contract.check_value(contract.PPOConfig, "kl_coef", 1), float)
    assert contract.check_value(contract.PPOConfig, "ptx_batch_size", None) is None
    with pytest.raises(ValueError, match="steps must be int, not None"):
        contract.check_value(contract.PPOConfig, "steps", None)


def test_cancelled_exit_status_is_defined_once():
    from app.jobs import child

    assert child.CANCELLED_EXIT is contract.CANCELLED_EXIT
    root = Path(contract.__file__).resolve().parents[1]
    defined = [p for d in ("app", "training") for p in (root / d).rglob("*.py")
               if "CANCELLED_EXIT =" in p.read_text(encoding="utf-8")]
    assert defined == [root / "training" / "contract.py"]
