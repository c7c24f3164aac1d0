"""The Celery app every job and task is sent through.

Production uses Redis (RLHF_REDIS_URL). With no Redis configured, the embedded default is
kombu's filesystem transport under the data directory: real worker processes, no server.
The engine owns the app so that the domains' tasks register on it without importing the
worker (app.worker, a face), which adds what the worker process loads and the beat schedule.
"""

from celery import Celery

from app.config import Settings, get_settings


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
        broker_connection_retry_on_startup=True,
        # Jobs are sent to their kind's queue explicitly (app.jobs.service.dispatch).
        # A message not acknowledged (acks_late) is delivered again after the visibility
        # timeout. Postgres, not this timeout, is what finds a dead worker (the reaper, within
        # RLHF_JOB_LEASE_S); a redelivery only finds the job claimed or ended and does nothing.
        # So the timeout need not cover the longest training run: an hour bounds how long a
        # message lost with its worker waits, and the sweep re-sends queued jobs anyway.
        broker_transport_options={"visibility_timeout": 3600},
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


celery_app = make_celery()


@celery_app.task(name="worker.ping")
def ping(value: str = "pong") -> dict[str, str]:
    """Round-trip check: a worker process received the message and answered."""
    import os

    return {"value": value, "pid": str(os.getpid())}
