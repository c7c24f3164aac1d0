"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from app.auth.models import ApiToken, LoginThrottle, Role, User, UserSession
from app.exports.models import DatasetSnapshot
from app.jobs.models import Job
from app.labeling.models import Demonstration, Ranking, Rating
from app.prompts.models import Candidate, Prompt, UseCase
from app.queue.models import Assignment, Task
from app.registry.models import ModelVersion

__all__ = [
    "ApiToken",
    "Assignment",
    "Candidate",
    "DatasetSnapshot",
    "Demonstration",
    "Job",
    "LoginThrottle",
    "ModelVersion",
    "Prompt",
    "Ranking",
    "Rating",
    "Role",
    "Task",
    "UseCase",
    "User",
    "UserSession",
]
