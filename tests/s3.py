"""A real S3 API on this machine: moto's server in a process of its own, on a free port,
with credentials checked (IAM), a user allowed everything, and one bucket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BUCKET = "rlhf"
ALLOW_ALL = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoS3:
    """The server; `key`/`secret` are a real user's, anything else is refused."""

    def __init__(self) -> None:
        import boto3

        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # The first requests set up the user unauthenticated; every later one is checked.
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="studio")
        made = iam.create_access_key(UserName="studio")["AccessKey"]
        iam.put_user_policy(UserName="studio", PolicyName="all",
                            PolicyDocument=json.dumps(ALLOW_ALL))
        self.key, self.secret = made["AccessKeyId"], made["SecretAccessKey"]
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id=self.key, aws_secret_access_key=self.secret)
        self.client.create_bucket(Bucket=BUCKET)

    def settings(self, prefix: str) -> dict[str, str]:
        """The RLHF_STORE_* variables of a store under this prefix of the bucket."""
        return {"RLHF_STORE_URL": f"s3://{BUCKET}/{prefix}",
                "RLHF_STORE_ENDPOINT_URL": self.endpoint,
                "RLHF_STORE_ACCESS_KEY": self.key, "RLHF_STORE_SECRET_KEY": self.secret}

    def keys(self, prefix: str) -> list[str]:
        """Every object under the prefix."""
        found = self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return sorted(o["Key"] for o in found)

    def store(self, prefix: str, cache_dir: Path, **overrides: str):  # type: ignore[no-untyped-def]
        """An app.store.Store on this server (overrides: endpoint_url, access_key, …)."""
        from app.store import Store

        options = {"endpoint_url": self.endpoint, "access_key": self.key,
                   "secret_key": self.secret, **overrides}
        return Store(f"s3://{BUCKET}/{prefix}", cache_dir=cache_dir, **options)

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.proc.kill()
