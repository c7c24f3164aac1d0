"""The loop, proven end to end (slow): a deployment as `make run` starts it (web, Celery
workers and beat on the embedded transport) on the test database, the demo's project at a
larger size, then `rlhf-studio simulate loop --rounds 1` on the shipped quick preset (no
overrides). The policy must beat its SFT model under the hidden rule by a margin the number
of test prompts makes significant (the lower end of the 95 % interval above one half).

Everything that can be seeded is: the project, the labelers' profiles and noise, every
training stage and the evaluation samples. What cannot is the order in which four
concurrent labelers take tasks, so the defaults must learn with a margin."""

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from tests.e2e.conftest import REPO, _free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(committed_db, tmp_path_factory):  # type: ignore[no-untyped-def]
    """`rlhf-studio up` (web, workers, beat) as `make run` starts it, on the embedded
    transport (its own folder) and the product's defaults: the round builds the tiny base in
    the data dir and trains with the quick preset; the test database. Its URL.
    tests/jobs/test_worker_loop.py runs the loop on Redis."""
    port = _free_port()
    data = tmp_path_factory.mktemp("deployment")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RLHF_BASE_MODEL", "RLHF_TRAIN_PRESET", "RLHF_MODELS_DIR",
                        "RLHF_EXPORTS_DIR")}
    env.update(RLHF_REDIS_URL="", RLHF_DATA_DIR=str(data))
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port),
                             "--no-access-log"], cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=2).json()["broker"]["ok"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_one_round_aligns_the_policy_with_the_hidden_rule(deployment, tmp_path):
    from app.cli import root
    from simulation.seed import seed

    made = seed(n_prompts=700, k=6, overlap=2)
    assert made["test_prompts"] >= 50
    report = tmp_path / "loop.json"
    args = ["simulate", "loop", "--url", deployment, "--rounds", "1", "--labelers", "4",
            "--n-prompts", "8", "--eval-prompts", "60", "--report", str(report), "--quiet"]
    out: list = []
    thread = threading.Thread(target=lambda: out.append(CliRunner().invoke(root, args)))
    thread.start()
    thread.join(timeout=3000)
    assert out and out[0].exit_code == 0, out[0].output if out else "timed out"
    row = json.loads(report.read_text())["rounds"][0]
    print("loop row:", json.dumps({k: row.get(k) for k in ("win_vs_sft", "kl", "rm", "agreement")}))
    assert set(row["jobs"].values()) == {"succeeded"}, row["jobs"]
    win = row["win_vs_sft"]
    assert win["n"] == min(60, made["test_prompts"]) and win["ci95"][0] > 0.5, win
    # Measured, though on the few new tasks too noisy to assert a level: the RM's held-out
    # accuracy; the labelers' agreement over every ranking is what their noise was set to.
    assert row["rm"]["vs_hidden"] is not None and row["kl"] > 0
    assert 0.66 < row["server_agreement"] < 0.80
