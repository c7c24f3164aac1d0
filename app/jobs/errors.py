"""The loop's error (jobs, rounds, the registry, generation): a sentence and its status."""

from app.errors import DomainError, Unavailable


class JobError(DomainError):
    """Refused: 404 unknown job/round/model, 409 conflict (a round runs, a job succeeded),
    422 not enough data or a bad config, 503 the broker cannot be reached."""

    status = 400


class BrokerUnavailable(Unavailable, JobError):
    """The job broker cannot be reached: 503 with Retry-After, caught as any JobError."""
