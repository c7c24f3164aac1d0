"""A real deployment in miniature for the loop's tests, as docker-compose lays it out:
uvicorn serving the app, a worker on the default queue with beat (the reaper and the
schedule tick), and a worker on the gpu queue, each its own process, on Redis or on the
embedded transport."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent.parent
REDIS_URL = os.environ.get("RLHF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The web process and the workers; `kill_worker()` SIGKILLs the gpu worker for real.
    `hosts` gives a process ("web", "default", "gpu") variables of its own: its own data
    directory, as on a machine of its own."""

    def __init__(self, broker: str, data_dir: Path,
                 hosts: dict[str, dict[str, str]] | None = None, **settings: str) -> None:
        self.hosts = hosts or {}
        self.env = {**os.environ, "RLHF_DATA_DIR": str(data_dir), "RLHF_JOB_LEASE_S": "6",
                    "RLHF_JOB_HEARTBEAT_S": "0.5", "RLHF_REDIS_URL": "",
                    **{f"RLHF_{k.upper()}": v for k, v in settings.items()}}
        if broker == "redis":
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
            self.env["RLHF_REDIS_URL"] = REDIS_URL
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.web = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=REPO, env={**self.env, **self.hosts.get("web", {})})
        self.worker: subprocess.Popen[bytes] | None = None
        self.start_default_worker()
        self.start_worker()
        self.http = httpx.Client(base_url=self.url, timeout=30)
        _wait(lambda: self.http.get("/login").status_code == 200, 90, "the web server")

    def _celery(self, host: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "app.worker", "worker", "--pool", "solo",
             "--without-mingle", "--without-gossip", "--loglevel", "WARNING", *args],
            cwd=REPO, env={**self.env, **self.hosts.get(host, {})}, start_new_session=True)

    def start_default_worker(self) -> None:
        """The default queue's worker (exports, imports, promotion), with beat beside it."""
        env = {**self.env, **self.hosts.get("default", {})}
        self.default = self._celery("default", "-Q", "default", "-n",
                                    f"default{time.monotonic_ns()}@%h", "--beat", "-s",
                                    str(Path(env["RLHF_DATA_DIR"]) / "beat"))

    def start_worker(self) -> None:
        """The gpu queue's worker (training, generation)."""
        self.worker = self._celery("gpu", "-Q", "gpu", "-n", f"gpu{time.monotonic_ns()}@%h")

    def kill_worker(self, which: str = "gpu") -> None:
        """SIGKILL a worker, the gpu one (its training child dies with it) or the default one
        (beat with it)."""
        proc = self.worker if which == "gpu" else self.default
        assert proc is not None
        # The whole process group (each worker starts a session of its own): a worker's
        # embedded beat is a child process, which a SIGKILL of the worker alone leaves running
        # (and sending the reaper and sweep into the next test's broker).
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def get(self, path: str, headers: dict[str, str]) -> Any:
        resp = self.http.get(path, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_job(self, job_id: int, headers: dict[str, str], done: Callable[[dict], bool],
                 timeout: float = 300) -> dict[str, Any]:
        """Poll a job until `done(job)`; returns the job."""
        found: dict[str, Any] = {}

        def check() -> bool:
            found.update(self.get(f"/api/v1/jobs/{job_id}", headers))
            return done(found)

        _wait(check, timeout, f"job {job_id}", lambda: {k: found.get(k) for k in (
            "state", "progress", "error", "inputs")})
        return found

    def wait_round(self, round_id: int, headers: dict[str, str],
                   timeout: float = 600) -> dict[str, Any]:
        """Poll a round until it ends; returns it."""
        found: dict[str, Any] = {}

        def check() -> bool:
            found.update(self.get(f"/api/v1/rounds/{round_id}", headers))
            return found["state"] in ("succeeded", "failed", "cancelled")

        _wait(check, timeout, f"round {round_id}", lambda: [
            (j["kind"], j["state"], j["error"]) for j in found.get("jobs", [])])
        return found

    def close(self) -> None:
        self.http.close()
        procs = [p for p in (self.worker, self.default, self.web) if p is not None]
        # Every process is asked to stop before any is waited for: their shutdowns overlap
        # instead of adding up.
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in (self.worker, self.default):  # and whatever each worker started
            if proc is not None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _wait(check: Callable[[], bool], timeout: float, what: str,
          seen: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, AssertionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not get there in {timeout:.0f} s; last seen: {seen()}")
