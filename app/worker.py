"""The worker process: `celery -A app.worker worker` (and `beat`).

The Celery app itself is the engine's (app.jobs.broker); this face adds what a worker
loads (every domain's tasks, and the modules that register themselves with a lower layer)
and the beat schedule, which names tasks of every layer.
"""

from celery import Celery
from celery.signals import beat_init, worker_init

from app import store
from app.config import Settings
from app.jobs import broker
from app.jobs.broker import celery_app
from app.wiring import SELF_REGISTERING, TASK_MODULES, wire

# The one beat schedule; entries name tasks by their explicit names.
BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "expire-leases": {"task": "queue.expire_leases", "schedule": 60.0},
    "reap-jobs": {"task": "jobs.reap", "schedule": 15.0},
    "tick-schedule": {"task": "rounds.tick_schedule", "schedule": 30.0},
    # The decision normally runs with the last judgment; this catches any it missed.
    "decide-rounds": {"task": "rounds.decide_rounds", "schedule": 30.0},
    # Store entries a dead worker published but never registered (docs/deploy.md).
    "sweep-store": {"task": "rounds.sweep_store", "schedule": 3600.0},
}


def configure(celery: Celery) -> Celery:
    """What a worker process adds to the engine's Celery app: its imports and beat."""
    celery.conf.update(imports=("app.worker", *TASK_MODULES, *SELF_REGISTERING),
                       beat_schedule=BEAT_SCHEDULE)
    return celery


def make_celery(settings: Settings | None = None) -> Celery:
    """A worker's Celery app on Redis or, with none configured, on the embedded transport."""
    return configure(broker.make_celery(settings))


def _check_store(process: str) -> None:
    """A process whose store cannot be reached, or refuses its credentials, does not start."""
    shared = store.current()
    if shared is None:
        return
    try:
        shared.check()
    except store.StoreError as exc:  # SystemExit: Celery logs and ignores an Exception here
        raise SystemExit(f"The {process} does not start: {exc}") from exc


@worker_init.connect
def _check_store_at_worker_start(**_: object) -> None:
    _check_store("worker")


@beat_init.connect
def _check_store_at_beat_start(**_: object) -> None:
    # The beat sends the store's sweep: with a store it cannot use, it would only fail
    # there, hourly, instead of at start-up with the reason.
    _check_store("beat")


configure(celery_app)
wire()

__all__ = ["BEAT_SCHEDULE", "celery_app", "configure", "make_celery"]
