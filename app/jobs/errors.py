"""The loop's error (jobs, rounds, the registry, generation): a sentence and its status; and
how a job's body says it was cancelled or failed."""

from app.errors import DomainError, Unavailable


class JobError(DomainError):
    """Refused: 404 unknown job/round/model, 409 conflict (a round runs, a job succeeded),
    422 not enough data or a bad config, 503 the broker cannot be reached."""

    status = 400


class BrokerUnavailable(Unavailable, JobError):
    """The job broker cannot be reached: 503 with Retry-After, caught as any JobError."""


class JobCancelled(Exception):
    """The job was cancelled (or lost its lease) and stopped at a step boundary."""


class JobFailed(Exception):
    """The job's work failed; the message says why and the job can be retried."""
