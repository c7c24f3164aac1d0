"""The background step of a campaign: generate its outputs, then make its compare tasks.

Registered as the `evaluation_generate` job kind of the jobs engine (queue "gpu") when
that engine is installed; otherwise a plain Celery task runs the same `generation.run`.
"""

from pathlib import Path
from typing import Any

from app import optional_module
from app.config import get_settings
from app.db import session_scope
from app.evaluation import generation
from app.worker import celery_app

JOB_KIND = "evaluation_generate"


def workdir(evaluation_id: int) -> Path:
    """Where a campaign's prompts and sampled outputs are written."""
    return get_settings().data_dir / "evaluations" / str(evaluation_id)


@celery_app.task(name="evaluation.generate")
def generate(evaluation_id: int) -> dict[str, Any]:
    """Generate a campaign's outputs and tasks (used when there is no jobs engine)."""
    return generation.run(evaluation_id=evaluation_id, workdir=workdir(evaluation_id),
                          session=session_scope,
                          run_training=generation.run_training_subprocess)


_kinds = optional_module("app.jobs.kinds")
if _kinds is not None:

    @_kinds.job_kind(JOB_KIND, queue="gpu")
    def run_job(ctx: Any) -> dict[str, Any]:
        """The jobs engine's entry: the same step, with its progress, log and cancel."""
        ctx.check_cancelled()
        return generation.run(evaluation_id=int(ctx.config["evaluation_id"]),
                              workdir=Path(ctx.workdir), session=ctx.session,
                              run_training=ctx.run_training, progress=ctx.progress)


def start(*, db: Any, evaluation: Any, user: Any) -> int | None:
    """Submit the generation job (the jobs engine enqueues it after the commit); the job's
    id, or None when the caller must call `enqueue` after committing."""
    jobs = optional_module("app.jobs.service")
    if _kinds is None or jobs is None:
        return None
    job = jobs.submit(db=db, kind=JOB_KIND, config={"evaluation_id": evaluation.id}, user=user)
    evaluation.job_id = job.id
    return int(job.id)


def enqueue(evaluation_id: int) -> None:
    """Send the plain Celery task; call after the campaign's row is committed."""
    generate.delay(evaluation_id)
