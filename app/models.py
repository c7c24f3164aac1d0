"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from app.auth.models import ApiToken, LoginThrottle, Role, User, UserSession
from app.evaluation.models import Evaluation, EvaluationItem, Judgment
from app.exports.models import DatasetSnapshot
from app.jobs.models import Job, JobMetric
from app.labeling.models import Demonstration, Ranking, Rating
from app.prompts.models import Candidate, Prompt, UseCase
from app.queue.models import Assignment, Task
from app.registry.models import AliasEvent, ModelAlias, ModelVersion, ModelVersionSnapshot
from app.rounds.models import Round, TrainSchedule

__all__ = [
    "AliasEvent",
    "ApiToken",
    "Assignment",
    "Candidate",
    "DatasetSnapshot",
    "Demonstration",
    "Evaluation",
    "EvaluationItem",
    "Job",
    "JobMetric",
    "Judgment",
    "LoginThrottle",
    "ModelAlias",
    "ModelVersion",
    "ModelVersionSnapshot",
    "Prompt",
    "Ranking",
    "Rating",
    "Role",
    "Round",
    "Task",
    "TrainSchedule",
    "UseCase",
    "User",
    "UserSession",
]
