"""A round's config checked against training/contract.py, and handed to the child as a file."""

import dataclasses

import pytest

from app.jobs.errors import JobError
from app.rounds import stage_config
from training import contract
from training.__main__ import config_from, parse_args


def test_fields_are_the_contracts_with_types_defaults_and_docs():
    for stage in stage_config.STAGES:
        cls = contract.STAGE_CONFIGS[stage]
        fields = stage_config.fields(stage)
        assert list(fields) == [f.name for f in dataclasses.fields(cls)]
    kl = stage_config.fields("ppo")["kl_coef"]
    assert (kl.type, kl.default) == ("float", 0.02) and kl.doc.startswith("β: per-token KL")
    assert stage_config.fields("sft")["dropout"].type == "float | None"


def test_validate_config_makes_an_int_a_float_and_keeps_none_where_allowed():
    clean = stage_config.validate_config(
        {"ppo": {"kl_coef": 1, "steps": 3, "ptx_batch_size": None, "adaptive_kl": True}},
        ["ppo"])
    assert clean == {"ppo": {"kl_coef": 1.0, "steps": 3, "ptx_batch_size": None,
                             "adaptive_kl": True}}
    assert isinstance(clean["ppo"]["kl_coef"], float)


@pytest.mark.parametrize("values, why", [
    ({"epochs": "3"}, "sft.epochs must be a int, not '3'"),
    ({"epochs": True}, "sft.epochs must be a int, not True"),
    ({"epochs": 2.5}, "sft.epochs must be a int, not 2.5"),
    ({"epochs": None}, "sft.epochs must be a int, not None"),
    ({"lr": float("nan")}, "sft.lr must be a float, not nan"),
    ({"lr": float("inf")}, "sft.lr must be a float, not inf"),
    ({"cpu": False}, "set by the round itself"),
    ({"epoch": 1}, "sft has no setting 'epoch'"),
])
def test_validate_config_refuses_a_value_its_field_cannot_take(values, why):
    with pytest.raises(JobError, match=why.replace("(", r"\(")) as refused:
        stage_config.validate_config({"sft": values}, ["sft"])
    assert refused.value.status == 422


def test_config_file_reaches_the_stage_as_the_values_the_round_shows(tmp_path):
    values = {**stage_config.overrides("rm", {"epochs": 2, "lr": 1e-4}),
              "base_model": "/m/sft", "train_data": "/d/grouped.jsonl", "out": "/m/rm-job7"}
    argv = stage_config.config_argv("rm", values, tmp_path / "rm.config.json")
    assert argv == ["rm", "--config", str(tmp_path / "rm.config.json")]
    cfg = config_from(parse_args(argv), contract.RewardConfig)
    shown = stage_config.effective("rm", {"epochs": 2, "lr": 1e-4})
    assert {name: getattr(cfg, name) for name in shown} == shown
    assert (cfg.base_model, cfg.out) == ("/m/sft", "/m/rm-job7")
