"""The jobs domain's error: a message a person can act on and the HTTP status it maps to."""


class JobError(ValueError):
    """Refused: 404 unknown job/round/model, 409 conflict (a round runs, a job succeeded),
    422 not enough data or a bad config, 503 the broker cannot be reached."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
