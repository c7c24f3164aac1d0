"""The queue's error: a message a person can act on and the HTTP status it maps to."""

from app.errors import DomainError


class QueueError(DomainError, ValueError):
    """A queue operation refused: 404 not found (or not yours), 409 conflict, 400 bad input."""
