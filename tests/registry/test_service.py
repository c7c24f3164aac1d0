"""The registry's files for the tiny base model, written by the worker."""

import json
import os
import subprocess
import sys
from pathlib import Path

from training.tiny import synthetic_corpus

ROOT = Path(__file__).resolve().parents[2]


def test_pretrain_corpus_writes_the_tiny_text_without_loading_torch(tmp_path: Path) -> None:
    # In a fresh process, as a worker's first PPO job: the pytest process has torch already.
    code = ("import json, sys; from app.registry.service import pretrain_corpus; "
            "path = pretrain_corpus(None); "
            "print(json.dumps({'path': path, 'torch': 'torch' in sys.modules}))")
    (tmp_path / "models").mkdir()
    env = {**os.environ, "RLHF_MODELS_DIR": str(tmp_path / "models"), "RLHF_BASE_MODEL": "",
           "RLHF_PRETRAIN_DATA": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=env).stdout
    found = json.loads(out)
    assert found["torch"] is False  # a list of strings is no reason to load torch
    rows = [json.loads(line) for line in Path(found["path"]).read_text().splitlines()]
    assert [r["text"] for r in rows] == synthetic_corpus(512, 7)  # the text PPO-ptx had
