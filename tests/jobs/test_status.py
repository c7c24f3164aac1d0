"""The status line `rlhf-studio up` prints, and `up --schedule`."""

from datetime import datetime

from app.auth.models import Role
from app.jobs import schedule
from app.jobs.status import status_line
from app.queue.models import AssignmentState, TaskKind
from tests.factories import finished, lease, make_task, make_user


def test_status_line_counts_submitted_labels_by_kind_and_says_no_policy_yet(db, monkeypatch):
    import app.jobs.status as status

    monkeypatch.setattr(status, "session_scope", _scope(db))
    labeler = make_user(db, Role.labeler)
    for kind, n in ((TaskKind.rank, 2), (TaskKind.demonstrate, 1)):
        for _ in range(n):
            finished(db, make_task(db, kind), labeler)
    lease(db, labeler, make_task(db, TaskKind.rank))  # leased: not a label yet
    finished(db, make_task(db, TaskKind.rate), labeler, state=AssignmentState.skipped)
    line = status_line(now=datetime(2026, 1, 1, 12, 1, 5))
    assert line.startswith("12:01:05 · 3 labels (rank 2, demonstrate 1)")
    assert "no policy yet" in line and "0 rounds done" in line


def test_up_schedule_turns_on_rounds_every_few_hundred_comparisons(db, monkeypatch):
    import app.db
    from app.cli import SCHEDULE_COMPARISONS, SCHEDULE_GENERATE, _schedule_rounds

    monkeypatch.setattr(app.db, "session_scope", _scope(db))
    _schedule_rounds()
    row = schedule.get_schedule(db=db)
    assert row.enabled and row.promote and row.every_hours is None
    assert row.min_new_comparisons == SCHEDULE_COMPARISONS
    assert SCHEDULE_GENERATE.items() <= (row.generate or {}).items()


def _scope(db):  # type: ignore[no-untyped-def]
    from contextlib import contextmanager

    @contextmanager
    def scope():  # type: ignore[no-untyped-def]
        yield db
        db.flush()

    return scope
