"""The schedule starts a round once per threshold crossing, never while one runs, and two
ticks at once (two beat processes by mistake) start one round."""

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from app.rounds import schedule
from app.rounds import service as rounds
from app.rounds.models import Round
from tests.jobs.loop import label_everything, labeler_token, seed_tasks


def _fed(db, live_client) -> None:  # type: ignore[no-untyped-def]
    seed_tasks(db)
    label_everything(live_client, labeler_token(db))


def _enable(db, **values) -> None:  # type: ignore[no-untyped-def]
    schedule.update_schedule(db=db, user=None, enabled=True, stages=["rm"], **{
        "every_hours": None, "min_new_comparisons": None, "min_new_demonstrations": None,
        **values})
    db.commit()


def _rounds(db) -> int:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Round)) or 0


def _end_rounds(db) -> None:  # type: ignore[no-untyped-def]
    for rnd in db.scalars(select(Round)):
        rnd.state = "succeeded"
    db.commit()


def test_threshold_fires_once_per_crossing(committed_db, live_client):
    db = committed_db
    _fed(db, live_client)  # 6 rankings of 4 = 36 comparisons
    _enable(db, min_new_comparisons=36)
    first = schedule.tick()
    assert first is not None and _rounds(db) == 1
    assert schedule.tick() is None  # it is running
    _end_rounds(db)
    assert schedule.tick() is None and _rounds(db) == 1  # no new feedback since its snapshot


def test_threshold_not_reached_does_not_fire(committed_db, live_client):
    db = committed_db
    _fed(db, live_client)
    _enable(db, min_new_comparisons=37)
    assert schedule.tick() is None and _rounds(db) == 0


def test_schedule_never_starts_a_round_while_one_runs(committed_db, live_client):
    db = committed_db
    _fed(db, live_client)
    rounds.create_round(db=db, user=None, stages=["rm"])
    db.commit()
    _enable(db, min_new_comparisons=1, every_hours=1.0)
    assert schedule.tick() is None and _rounds(db) == 1


def test_two_ticks_at_once_start_one_round(committed_db, live_client):
    db = committed_db
    _fed(db, live_client)
    _enable(db, min_new_comparisons=10)
    with ThreadPoolExecutor(2) as pool:
        started = [f.result() for f in [pool.submit(schedule.tick) for _ in range(2)]]
    assert sorted(x is not None for x in started) == [False, True]
    assert _rounds(db) == 1


def test_schedule_that_makes_no_sense_is_refused(client, db):
    from tests.factories import make_user

    user = make_user(db, "researcher")
    from app.auth import service as auth

    _, token = auth.create_token(db=db, user=user)
    headers = {"Authorization": f"Bearer {token}"}
    for body, words in (({"enabled": True}, "needs a period"),
                        ({"enabled": True, "every_hours": 0}, "between 0.05"),
                        ({"enabled": True, "min_new_comparisons": -3}, "between 1"),
                        ({"enabled": True, "every_hours": 1, "stages": ["dpo?"]}, "Unknown")):
        resp = client.put("/api/v1/schedule", json=body, headers=headers)
        assert resp.status_code == 422 and words in resp.json()["detail"], resp.text
    assert client.get("/api/v1/schedule", headers=headers).json()["enabled"] is False
