"""The worker process: `celery -A app.worker worker` (and `beat`).

The Celery app itself is the engine's (app.jobs.broker); this face adds what a worker
loads (every domain's tasks, and the modules that register themselves with a lower layer)
and the beat schedule, which names tasks of every layer.
"""

import importlib.util

from celery import Celery

from app.config import Settings
from app.jobs import broker
from app.jobs.broker import celery_app

# Domains whose tasks.py holds Celery tasks; imported by the worker when present.
TASK_MODULES = tuple(
    f"app.{d}.tasks"
    for d in ("queue", "labeling", "agreement", "exports", "jobs", "registry", "evaluation")
    if importlib.util.find_spec(f"app.{d}.tasks") is not None
)
# Modules that register themselves with a lower layer when imported: the watch's flags,
# which a round that promotes "if_better" must respect (app.jobs.judged.FLAG_SOURCES).
SELF_REGISTERING = ("app.loop.watch",)


# The one beat schedule; entries name tasks by their explicit names.
BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "expire-leases": {"task": "queue.expire_leases", "schedule": 60.0},
    "reap-jobs": {"task": "jobs.reap", "schedule": 15.0},
    "tick-schedule": {"task": "jobs.tick_schedule", "schedule": 30.0},
    # The decision normally runs with the last judgment; this catches any it missed.
    "decide-rounds": {"task": "jobs.decide_rounds", "schedule": 30.0},
}


def configure(celery: Celery) -> Celery:
    """What a worker process adds to the engine's Celery app: its imports and beat."""
    celery.conf.update(imports=("app.worker", *TASK_MODULES, *SELF_REGISTERING),
                       beat_schedule=BEAT_SCHEDULE)
    return celery


def make_celery(settings: Settings | None = None) -> Celery:
    """A worker's Celery app on Redis or, with none configured, on the embedded transport."""
    return configure(broker.make_celery(settings))


configure(celery_app)

__all__ = ["BEAT_SCHEDULE", "celery_app", "configure", "make_celery"]
