"""The queue's error: a message a person can act on and the HTTP status it maps to."""


class QueueError(ValueError):
    """A queue operation refused: 404 not found (or not yours), 409 conflict, 400 bad input."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
