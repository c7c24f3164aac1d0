"""The status line `rlhf-studio up` prints, and `up --schedule`."""

from datetime import datetime

from app.auth.models import Role
from app.queue.models import AssignmentState, TaskKind
from app.rounds import schedule
from app.rounds.status import status_line
from tests.factories import finished, lease, make_task, make_user


def test_status_line_counts_submitted_labels_by_kind_and_says_no_policy_yet(db, monkeypatch):
    import app.rounds.status as status

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
    assert row.enabled and row.promote_if_better and not row.promote
    assert row.evaluate == {"n_prompts": None, "overlap": 1, "judges": "all"}
    assert row.every_hours is None
    assert row.min_new_comparisons == SCHEDULE_COMPARISONS
    assert SCHEDULE_GENERATE.items() <= (row.generate or {}).items()


def _scope(db):  # type: ignore[no-untyped-def]
    from contextlib import contextmanager

    @contextmanager
    def scope():  # type: ignore[no-untyped-def]
        yield db
        db.flush()

    return scope


def test_a_scheduled_round_is_judged_by_people_and_promoted_if_better(db, monkeypatch):
    """The schedule's campaign and if_better reach the round it starts."""
    import app.rounds.schedule as sched
    from app.auth.models import Role
    from tests.factories import make_prompt

    monkeypatch.setattr(sched, "session_scope", _scope(db))
    monkeypatch.setattr(sched.jobs, "dispatch", lambda ids: None)
    for split in ("train", "test", "test", "test"):
        make_prompt(db, split=split)
    make_user(db, Role.labeler)
    schedule.update_schedule(db=db, user=None, enabled=True, every_hours=1.0,
                             min_new_comparisons=None, min_new_demonstrations=None,
                             stages=["ppo"], promote="if_better",
                             evaluate={"overlap": 1, "judges": "all"})
    round_id = schedule.tick()
    assert round_id is not None
    rnd = db.get(sched.Round, round_id)
    assert rnd.promote_if_better and not rnd.promote and rnd.evaluate["judges"] == "all"


def test_a_schedule_with_a_bad_campaign_is_refused_and_changes_nothing(db):
    import pytest

    from app.jobs.errors import JobError

    with pytest.raises(JobError, match="evaluate"):
        schedule.update_schedule(db=db, user=None, enabled=True, every_hours=1.0,
                                 min_new_comparisons=None, min_new_demonstrations=None,
                                 promote="if_better", evaluate={"judges": "everyone"})
    with pytest.raises(JobError, match="promote"):
        schedule.update_schedule(db=db, user=None, enabled=True, every_hours=1.0,
                                 min_new_comparisons=None, min_new_demonstrations=None,
                                 promote="maybe")
    assert not schedule.get_schedule(db=db).enabled


def test_with_the_schedule_on_the_status_line_says_what_the_next_round_waits_for(
        client, db, monkeypatch):
    import app.rounds.status as status
    from tests.jobs.loop import label_everything, labeler_token, seed_tasks

    monkeypatch.setattr(status, "session_scope", _scope(db))
    assert "next round" not in status_line()  # no schedule: nothing to wait for
    schedule.update_schedule(db=db, user=None, enabled=True, every_hours=None,
                             min_new_comparisons=700, min_new_demonstrations=None)
    assert "next round waits for SFT: 0 of 6 demonstrations on train-split prompts" \
        in status_line()
    seed_tasks(db, n_demos=6, n_ranks=6)  # rank tasks of 4 outputs: 6 comparisons each
    label_everything(client, labeler_token(db))
    assert "next round at 700 new comparisons (36 so far)" in status_line()
