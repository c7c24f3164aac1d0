"""The first README command's path on a fresh data directory: migrate, seed the demo,
`rlhf-studio up` (web + worker + beat on the embedded defaults), log in with the printed
credentials."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.factories import csrf_from

CLI = [sys.executable, "-m", "app.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLHF_")}
    return {**env, "RLHF_DATA_DIR": str(data_dir), "RLHF_ENV": "development"}


@pytest.mark.slow
def test_fresh_install_runs_and_demo_login_works(tmp_path: Path):
    env = _env(tmp_path / "data")
    for args in (["db", "upgrade"], ["demo"]):
        done = subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    match = re.search(r"labeler\s+(\S+@example\.com)\s+(\S+)", done.stdout)
    assert match, done.stdout
    email, password = match.groups()

    port = _free_port()
    up = subprocess.Popen(CLI + ["up", "--port", str(port)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = time.monotonic()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            while True:
                try:
                    health = http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert up.poll() is None, up.stdout.read() if up.stdout else ""
                    assert time.monotonic() - started < 60, "web app did not start"
                    time.sleep(0.2)
            assert health.status_code == 200, health.text
            assert health.json()["broker"]["kind"] == "embedded"
            csrf = csrf_from(http.get("/login").text)
            resp = http.post("/login", data={"email": email, "password": password,
                                             "csrf_token": csrf})
            assert resp.status_code == 303
            assert http.get("/api/v1/me").json()["email"] == email
    finally:
        up.terminate()
        up.wait(timeout=30)


@pytest.mark.slow
def test_up_refuses_unmigrated_database(tmp_path: Path):
    done = subprocess.run(CLI + ["up", "--port", str(_free_port())], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "rlhf-studio db upgrade" in done.stderr
