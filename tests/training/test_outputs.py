"""Model directories appear whole or not at all; manifests fingerprint the data."""

import hashlib
import json

import pytest

from training.models import load_policy, load_tokenizer, save_model_dir
from training.outputs import RunLog, atomic_dir, data_fingerprint


class Boom(RuntimeError):
    pass


def test_crash_mid_save_leaves_no_model_dir(tiny_dir, tmp_path, monkeypatch):
    tok = load_tokenizer(tiny_dir)
    model = load_policy(tiny_dir, tok)
    log = RunLog(tmp_path / "sft", total=1, desc="t", enabled=True)
    log.log(1, {"loss": 1.0})

    def crash(*args, **kwargs):
        raise Boom("disk full")

    monkeypatch.setattr(type(tok), "save_pretrained", crash)  # model weights already written
    with pytest.raises(Boom):
        save_model_dir(
            tmp_path / "sft", model, tok, log, kind="sft", parent_model=None, config={}, metrics={}
        )
    assert not (tmp_path / "sft").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # temp dir cleaned up


def test_crash_while_replacing_keeps_the_old_dir(tmp_path):
    target = tmp_path / "rm"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(Boom), atomic_dir(target) as tmp:
        (tmp / "weights").write_text("half of v2")
        raise Boom()
    assert (target / "weights").read_text() == "v1"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]


def test_data_fingerprint_is_the_file_sha256(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"x": 1}\n')
    b.write_text('{"x": 2}\n')
    one = data_fingerprint([a, None])
    assert one["data_sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    both = data_fingerprint([a, b])
    assert both["data_sha256"] not in (one["data_sha256"], data_fingerprint([b])["data_sha256"])
    assert [f["path"] for f in both["data_files"]] == [str(a), str(b)]


def test_run_log_writes_jsonl_and_calls_back(tmp_path):
    seen = []
    log = RunLog(tmp_path / "m", total=2, desc="t", callback=lambda *a: seen.append(a))
    log.log(1, {"loss": 0.5})
    log.log(2, {"loss": 0.25})
    (tmp_path / "m").mkdir()
    log.finish_into(tmp_path / "m")
    rows = [json.loads(x) for x in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    assert seen == [(1, 2, {"step": 1, "loss": 0.5}), (2, 2, {"step": 2, "loss": 0.25})]


def test_a_stage_names_its_device_in_words():
    from types import SimpleNamespace

    import torch

    from training.loop import describe_device

    cpu = SimpleNamespace(device=torch.device("cpu"), num_processes=1)
    assert describe_device(cpu) == "CPU"  # type: ignore[arg-type]
    assert describe_device(SimpleNamespace(device=torch.device("cpu"), num_processes=2)  # type: ignore[arg-type]
                           ) == "CPU × 2 processes"
