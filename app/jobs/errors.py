"""The loop's error (jobs, rounds, the registry, generation): a sentence and its status."""

from app.errors import DomainError


class JobError(DomainError):
    """Refused: 404 unknown job/round/model, 409 conflict (a round runs, a job succeeded),
    422 not enough data or a bad config, 503 the broker cannot be reached."""

    status = 400
