"""What a job does, by kind: `@job_kind("sft", queue="gpu")` registers a handler.

A handler receives a JobContext and returns the job's outputs (a JSON-able dict). It
reports through the context (progress, metrics, log lines), checks for cancellation at its
step boundaries, and runs training as a child process with `ctx.run_training(argv)`.
A kind may also name `on_success(db, job, outputs)`: it runs in the same transaction that
marks the job succeeded, so what it records (a model version) exists if and only if the job
succeeded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app import store
from app.db import session_scope
from app.jobs.errors import JobCancelled

Handler = Callable[["JobContext"], dict[str, Any]]
OnSuccess = Callable[[Session, Any, dict[str, Any]], None]
OnFailure = Callable[[Session, Any], None]






@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    queue: str = "default"
    on_success: OnSuccess | None = None
    label: str = ""
    on_failure: OnFailure | None = None  # runs when the job ends failed or cancelled


KINDS: dict[str, JobKind] = {}


def all_kinds() -> dict[str, JobKind]:
    """Every job kind registered so far. The modules that define kinds register them when
    imported; every process imports them all at start-up (app.wiring.wire), since the engine
    imports no domain."""
    return KINDS


# What a job's round does when one of its jobs is claimed or ends: set by the rounds layer
# (app.rounds.service), which owns rounds; the engine only knows a job's round id. It returns
# the ids of the jobs to send next.
RoundHook = Callable[..., list[int]]
_ROUND_HOOK: list[RoundHook] = []


def on_round_change(settle: RoundHook) -> None:
    """Set what settles a round after one of its jobs changed state."""
    _ROUND_HOOK[:] = [settle]


def settle_round(db: Session, round_id: int) -> list[int]:
    """Bring a round in line with its jobs; the job ids to send next (none without rounds)."""
    return _ROUND_HOOK[0](db=db, round_id=round_id) if _ROUND_HOOK else []


def job_kind(name: str, *, queue: str = "default", on_success: OnSuccess | None = None,
             on_failure: OnFailure | None = None, label: str = "") -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of jobs of this kind."""

    def register(handler: Handler) -> Handler:
        KINDS[name] = JobKind(name, handler, queue, on_success, label or name, on_failure)
        return handler

    return register


@dataclass
class Report:
    """What a running job has said since the last heartbeat; flushed to its row by it."""

    progress: float | None = None
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[float | None, list[tuple[int, dict[str, float]]], list[str]]:
        with self.lock:
            out = (self.progress, self.metrics, self.log)
            self.progress, self.metrics, self.log = None, [], []
        return out


@dataclass
class JobContext:
    """A running job's view of itself: its config and inputs, and where to report."""

    job_id: int
    kind: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    workdir: Path
    report: Report = field(default_factory=Report)
    cancel: threading.Event = field(default_factory=threading.Event)
    child_timeout_s: float = 10.0  # grace before a cancelled child is killed

    def progress(self, fraction: float) -> None:
        """Share of the work done, 0..1."""
        with self.report.lock:
            self.report.progress = max(0.0, min(1.0, float(fraction)))

    def metric(self, step: int, values: dict[str, Any]) -> None:
        """One step's metrics (numbers only; others are dropped)."""
        clean = {k: float(v) for k, v in values.items()
                 if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
        if clean:
            with self.report.lock:
                self.report.metrics.append((int(step), clean))

    def log(self, line: str) -> None:
        """A line for the job's log tail."""
        with self.report.lock:
            self.report.log.append(line.rstrip("\n")[:2000])

    def cancelled(self) -> bool:
        """True once a cancel was asked for (or the job lost its lease)."""
        return self.cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise JobCancelled at a step boundary if a cancel was asked for."""
        if self.cancel.is_set():
            raise JobCancelled("cancelled")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work on the database."""
        with session_scope() as db:
            yield db

    def set_inputs(self, **values: Any) -> None:
        """Record what the job reads and where it writes (on its row, at once): a failed
        job's planned output directory is removed by whoever ends it."""
        from app.jobs.models import Job

        self.inputs.update(values)
        with session_scope() as db:
            job = db.get(Job, self.job_id)
            if job is not None:
                job.inputs = dict(self.inputs)

    def run_training(self, argv: list[str], *, processes: int = 1) -> None:
        """Run `python -m training ARGV` as a child, streaming its steps into this job."""
        from app.jobs.child import run_child

        # A model named by its store URL (`sample --model s3://…`) is read from the cache.
        argv = [store.localize(a, log=self.log) for a in argv]
        run_child(self, argv, processes=processes)
