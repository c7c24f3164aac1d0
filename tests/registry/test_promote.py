"""Promotes and rollbacks at once (a double click, two researchers) on the real database:
one moves the alias, the other is told it is already there; rollback still goes back."""

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import select

from app.db import SessionLocal
from app.jobs.errors import JobError
from app.registry import service as registry
from app.registry.models import AliasEvent, ModelVersion

pytestmark = pytest.mark.postgres_only  # SQLite serialises writers: no race to lose


def _versions(db, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    found = [ModelVersion(kind="sft", name=f"sft-{i}", path=f"/models/race-{i}")
             for i in range(n)]
    db.add_all(found)
    db.commit()
    return [v.id for v in found]


def _outcome(call: Callable[..., object], **kwargs: object) -> str:
    with SessionLocal() as db:
        try:
            call(db=db, user_id=None, **kwargs)
            db.commit()
            return "200"
        except JobError as exc:
            return str(exc.status)
        except Exception as exc:  # the 500 a race used to answer
            return type(exc).__name__


def _pair(call: Callable[..., object], **kwargs: object) -> tuple[str, str]:
    """Run `call` twice at once, released together; the two outcomes, sorted."""
    start, found = threading.Barrier(2), []

    def one() -> None:
        start.wait()
        found.append(_outcome(call, **kwargs))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return tuple(sorted(found))  # type: ignore[return-value]


def _held_first(version_id: int) -> tuple[str, str]:
    """The first promote holds its transaction open while the second runs: the interleaving
    that a double click produces now and then, every time."""
    moved, done = threading.Event(), threading.Event()
    second: list[str] = []

    def late() -> None:
        moved.wait()
        second.append(_outcome(registry.promote, version_id=version_id))
        done.set()

    thread = threading.Thread(target=late)
    thread.start()
    with SessionLocal() as db:
        registry.promote(db=db, user_id=None, version_id=version_id)
        moved.set()
        done.wait(1.0)  # the second blocks on the alias until this commits
        db.commit()
    thread.join(30)
    return "200", second[0]


def test_a_double_promote_moves_the_alias_once_when_it_was_unset(committed_db):
    (first,) = _versions(committed_db, 1)
    assert _held_first(first) == ("200", "409")
    events = committed_db.scalars(select(AliasEvent)).all()
    assert [(e.from_version_id, e.to_version_id) for e in events] == [(None, first)]


def test_a_double_promote_moves_the_alias_once_and_rollback_goes_back(committed_db):
    a, b = _versions(committed_db, 2)
    assert _outcome(registry.promote, version_id=a) == "200"
    assert _held_first(b) == ("200", "409")
    committed_db.expire_all()
    moves = [(e.from_version_id, e.to_version_id) for e in
             committed_db.scalars(select(AliasEvent).order_by(AliasEvent.id))]
    assert moves == [(None, a), (a, b)]
    assert _outcome(registry.rollback, kind="sft") == "200"
    assert registry.alias_target(db=committed_db, alias="sft:active").id == a  # type: ignore[union-attr]


def test_twenty_concurrent_promote_pairs_never_answer_500_nor_move_twice(committed_db):
    ids = _versions(committed_db, 20)
    outcomes = Counter(_pair(registry.promote, version_id=v) for v in ids)
    print(f"20 promote pairs: {dict(outcomes)}")
    assert outcomes == {("200", "409"): 20}
    committed_db.expire_all()
    moves = committed_db.scalars(select(AliasEvent).order_by(AliasEvent.id)).all()
    assert len(moves) == 20 and all(m.from_version_id != m.to_version_id for m in moves)
    # Two rollbacks at once run one after the other (the second undoes the first), never
    # both undoing the same move.
    assert sorted(_pair(registry.rollback, kind="sft")) == ["200", "200"]
    committed_db.expire_all()
    assert registry.alias_target(db=committed_db, alias="sft:active").id == ids[-1]  # type: ignore[union-attr]
