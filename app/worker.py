"""The Celery app and its beat schedule: `celery -A app.worker worker`.

Production uses Redis (RLHF_REDIS_URL). With no Redis configured, the embedded default is
kombu's filesystem transport under the data directory: real worker processes, no server.
"""

import importlib.util

from celery import Celery
from celery.signals import worker_init

from app import store
from app.config import Settings, get_settings

# Domains whose tasks.py holds Celery tasks; imported by the worker when present.
TASK_MODULES = tuple(
    f"app.{d}.tasks"
    for d in ("queue", "labeling", "agreement", "exports", "jobs", "registry", "evaluation")
    if importlib.util.find_spec(f"app.{d}.tasks") is not None
)
# Modules that register themselves with a lower layer when imported: the watch's flags,
# which a round that promotes "if_better" must respect (app.jobs.judged.FLAG_SOURCES).
SELF_REGISTERING = ("app.loop.watch",)


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app on Redis or, with none configured, on the embedded transport."""
    settings = settings or get_settings()
    celery = Celery("rlhf_studio", broker=settings.broker_url, backend=settings.result_backend)
    celery.conf.update(
        task_default_queue="default",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        imports=("app.worker", *TASK_MODULES, *SELF_REGISTERING),
        broker_connection_retry_on_startup=True,
        # Jobs are sent to their kind's queue explicitly (app.jobs.service.dispatch).
        # A message not acknowledged (acks_late) is delivered again after the visibility
        # timeout. Postgres, not this timeout, is what finds a dead worker (the reaper, within
        # RLHF_JOB_LEASE_S); a redelivery only finds the job claimed or ended and does nothing.
        # So the timeout need not cover the longest training run: an hour bounds how long a
        # message lost with its worker waits, and the sweep re-sends queued jobs anyway.
        broker_transport_options={"visibility_timeout": 3600},
        beat_schedule=BEAT_SCHEDULE,
    )
    if not settings.redis_url:
        folder = settings.broker_folder
        for sub in ("in", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (settings.data_dir / "celery-results").resolve().mkdir(parents=True, exist_ok=True)
        celery.conf.broker_transport_options = {
            "visibility_timeout": 3600,
            "data_folder_in": str(folder / "in"),
            "data_folder_out": str(folder / "in"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
        celery.conf.beat_schedule_filename = str((settings.data_dir / "celerybeat").resolve())
    return celery


# The one beat schedule; entries name tasks by their explicit names.
BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "expire-leases": {"task": "queue.expire_leases", "schedule": 60.0},
    "reap-jobs": {"task": "jobs.reap", "schedule": 15.0},
    "tick-schedule": {"task": "jobs.tick_schedule", "schedule": 30.0},
    # The decision normally runs with the last judgment; this catches any it missed.
    "decide-rounds": {"task": "jobs.decide_rounds", "schedule": 30.0},
}

celery_app = make_celery()


@worker_init.connect
def _check_store(**_: object) -> None:
    """A worker whose store cannot be reached, or refuses its credentials, does not start."""
    shared = store.current()
    if shared is None:
        return
    try:
        shared.check()
    except store.StoreError as exc:  # SystemExit: Celery logs and ignores an Exception here
        raise SystemExit(f"The worker does not start: {exc}") from exc


@celery_app.task(name="worker.ping")
def ping(value: str = "pong") -> dict[str, str]:
    """Round-trip check: a worker process received the message and answered."""
    import os

    return {"value": value, "pid": str(os.getpid())}
