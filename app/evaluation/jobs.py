"""The background step of a campaign, as the jobs engine's `evaluation_generate` kind
(queue "gpu"): generate its outputs, then make its compare tasks."""

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.auth.models import User
from app.evaluation import generation, service
from app.evaluation.models import Evaluation
from app.evaluation.schemas import EvaluationCreate, EvaluationCreated
from app.jobs import service as jobs
from app.jobs.kinds import JobContext, job_kind

JOB_KIND = "evaluation_generate"


@job_kind(JOB_KIND, queue="gpu", label="generate evaluation outputs")
def run_job(ctx: JobContext) -> dict[str, Any]:
    """Sample every compared version on the campaign's prompts, then make its tasks."""
    ctx.check_cancelled()
    evaluation_id = int(ctx.config["evaluation_id"])
    ctx.log(f"evaluation {evaluation_id}: sampling outputs")
    out = generation.run(evaluation_id=evaluation_id, workdir=Path(ctx.workdir),
                         session=ctx.session, run_training=ctx.run_training,
                         progress=ctx.progress)
    ctx.log(f"evaluation {evaluation_id}: {out.get('tasks', 0)} compare tasks")
    return out


def start(*, db: Session, evaluation: Evaluation, user: User | None) -> int:
    """Record the generation job of a new campaign; the caller dispatches it after the
    commit (`dispatch`)."""
    job = jobs.submit(db=db, kind=JOB_KIND, config={"evaluation_id": evaluation.id}, user=user)
    evaluation.job_id = job.id
    db.flush()
    return int(job.id)


def create(*, db: Session, user: User,
           spec: EvaluationCreate) -> tuple[EvaluationCreated, int]:
    """Record a checked campaign and its generation job (the API's and the form's): the
    answer and the job's id, which the caller dispatches once both are committed."""
    evaluation = service.create_evaluation(db=db, user=user, spec=spec)
    job_id = start(db=db, evaluation=evaluation, user=user)
    return EvaluationCreated(id=evaluation.id, job_id=job_id, state=evaluation.state), job_id


def dispatch(job_id: int) -> None:
    """Send the job to a worker; call once the campaign and its job are committed."""
    jobs.dispatch([job_id])
