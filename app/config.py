"""Settings: the one place that reads the environment (prefix RLHF_)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me-in-production"


class Settings(BaseSettings):
    """Every setting of RLHF Studio; README.md lists them with their defaults."""

    model_config = SettingsConfigDict(env_prefix="RLHF_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: a SQLite file under data_dir
    redis_url: str = ""  # empty: the embedded Celery transport under data_dir
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    secure_cookies: bool = False  # set on deployments served over https
    session_max_age_s: int = 14 * 24 * 3600
    # Failed logins allowed per window: per (account, client address), per account from
    # any address, and per address for any accounts (looser: many people share one NAT).
    login_max_failures: int = 5
    login_max_failures_account: int = 20
    login_max_failures_address: int = 50
    login_window_s: int = 15 * 60
    lease_minutes: int = 30
    base_model: str = ""  # empty: the tiny offline model built under data_dir
    # Both default under data_dir (see _paths_under_data_dir), so two deployments with their
    # own data dirs never write into each other's models or snapshots.
    models_dir: Path = Path("data/models")
    exports_dir: Path = Path("data/exports")
    # A store several machines share (docs/deploy.md): models and snapshots are published
    # there (file:// or s3://) and cached by checksum under data_dir/store-cache; empty:
    # models_dir and exports_dir are the only copies, on this machine's disk.
    store_url: str = ""
    store_endpoint_url: str = ""  # an S3 API other than AWS's (MinIO), e.g. http://minio:9000
    store_access_key: str = ""  # empty: s3fs's own lookup (AWS_* variables, instance role)
    store_secret_key: SecretStr = SecretStr("")
    # Each machine's cache of the store is kept under this many GB: the least recently used
    # entries are evicted when a download or publish passes it (never one a job is reading).
    store_cache_max_gb: float = Field(default=100.0, gt=0)
    # An entry of the store that no model version or snapshot names is removed by the
    # periodic sweep once its commit is this old (a worker that died between publishing and
    # registering left it); younger ones may still be on their way to the registry.
    store_sweep_grace_hours: float = Field(default=1.0, gt=0)
    # Prompt and candidate uploads: refused above the first; above the second imported by a
    # job (202 with its id, progress on the job) rather than inside the request.
    import_max_upload_mb: float = 200.0
    # Any other request body: refused (413) above this, where the bytes arrive, before the
    # route authenticates or parses it (app/main.py).
    body_max_kb: int = 1024
    import_inline_max_mb: float = 5.0
    db_pool_size: int = 10
    # Jobs (docs/loop.md): a running job proves it is alive every job_heartbeat_s; the reaper
    # fails one silent for job_lease_s. A queued job whose message was lost is sent again.
    job_heartbeat_s: float = 2.0
    job_lease_s: float = 60.0
    job_resend_after_s: float = 90.0  # and no message waits in its queue (app/jobs/service.py)
    job_cancel_grace_s: float = 10.0  # a cancelled stage's child is killed after this
    train_threads: int = 0  # torch threads per training child (0: torch's default)
    train_preset: Literal["auto", "quick", "paper"] = "auto"  # auto: quick on the tiny model
    pretrain_data: str = ""  # PPO-ptx pretraining text; empty: the tiny model's corpus or none
    # Beyond data_dir, exports_dir and models_dir, where files a round's config names may be
    # (ppo.pretrain_data, ppo.eval_prompts); a JSON list of directories.
    train_path_roots: list[Path] = []
    round_min_demonstrations: int = 8
    round_min_rankings: int = 8
    # A round that trained but barely learned says so (its page and JSON) instead of
    # looking like success: the RM at chance on its held-out rankings, the policy at its SFT.
    round_min_rm_accuracy: float = 0.55
    round_min_kl: float = 0.05  # nats per answer
    # The reward-hacking watch (docs/loop.md, "The watch"): a round is flagged when its
    # policy's KL to SFT on test prompts passes watch_max_kl (nats per answer); when its RM
    # score gain over SFT passes watch_rm_rise while people do not prefer it (the lower 95%
    # bound of its win rate against the previous policy, else SFT, is at most ½, over at
    # least watch_min_judgments judgments or a complete campaign); when its mean answer
    # length grows by more than watch_length_jump (a share) over SFT's or the share of
    # answers cut at the cap or unfinished rises by more than watch_cut_jump; or when its
    # repeated 3-gram share rises by more than watch_repetition_jump, or its distinct-2
    # falls by more than watch_distinct_drop (any optimisation narrows the vocabulary a
    # little: on the tiny model a gentle PPO run loses about 0.2, a gamed one 0.4). The KL
    # bound: on the demo at the quick preset's β 0.1, the round-1 policies of 13 runs were
    # 8.4-16.2 nats from SFT on test prompts, and the one at 23.5 had also grown its answers
    # by 72 %. At 10 the watch held every round people preferred, at 15 two of twelve, on KL
    # alone: a flag that fires on healthy rounds teaches people to ignore it.
    watch_max_kl: float = 20.0
    watch_rm_rise: float = 0.05
    # With a round's campaign scored by its RM (app/evaluation/generation.py: score_pairs),
    # the RM-vs-people flag reads the same pairs instead: the RM prefers the policy on more
    # of them than people do by over this, while people are flat. On the demo, rounds as
    # good as the one before them read 0.56 (people 0.52) and 0.32 (people 0.38), where the
    # gain over SFT flagged both; a policy that games its RM is one it prefers on most pairs
    # people find level. Measured on one (bench/bench_first_loop.py --judge length:40, round
    # 2): its RM preferred it on 57 % of the pairs against round 1's policy, people on 25 %.
    watch_rm_people_gap: float = 0.2
    watch_min_judgments: int = 20
    watch_length_jump: float = 0.5
    watch_cut_jump: float = 0.25
    watch_repetition_jump: float = 0.15
    watch_distinct_drop: float = 0.3
    db_pool_recycle_s: int = 1800
    db_connect_timeout_s: int = 5  # a database that does not answer is an outage (503)
    db_lock_timeout_s: float = 30.0  # SQLite: a write waits this long for the lock, then 503
    keep_alive_s: int = 75  # uvicorn's keep-alive, above the proxies' in front of it

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> "Settings":
        if self.env == "production" and self.secret_key.get_secret_value() == PLACEHOLDER_SECRET:
            raise ValueError("RLHF_SECRET_KEY must be set to a random value in production")
        return self

    @field_validator("models_dir", "exports_dir", mode="before")
    @classmethod
    def _local_dirs(cls, value: object) -> object:
        if "://" in str(value):  # a Path would make s3://b a local folder "s3:/b"
            raise ValueError(f"RLHF_MODELS_DIR and RLHF_EXPORTS_DIR are directories on this "
                             f"machine, not {value!r}: a shared store goes in RLHF_STORE_URL")
        return value

    @model_validator(mode="after")
    def _store_url_scheme(self) -> "Settings":
        scheme, sep, rest = self.store_url.partition("://")
        if self.store_url and (not sep or scheme not in ("file", "s3") or not rest.strip("/")):
            raise ValueError(f"RLHF_STORE_URL must be a file:///path or s3://bucket[/prefix] "
                             f"URL, not {self.store_url!r}")
        return self

    @model_validator(mode="after")
    def _paths_under_data_dir(self) -> "Settings":
        """Models and exports follow RLHF_DATA_DIR unless they are set on their own."""
        if "models_dir" not in self.model_fields_set:
            self.models_dir = self.data_dir / "models"
        if "exports_dir" not in self.model_fields_set:
            self.exports_dir = self.data_dir / "exports"
        return self

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'rlhf.sqlite').resolve()}"

    @property
    def store_cache_max_bytes(self) -> int:
        """The cache's bound in bytes."""
        return int(self.store_cache_max_gb * 1e9)

    @property
    def broker_url(self) -> str:
        return self.redis_url or "filesystem://"

    @property
    def result_backend(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"file://{(self.data_dir / 'celery-results').resolve()}"

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "celery-broker").resolve()


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
