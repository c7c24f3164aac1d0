"""The queue service: leases, priority, skips, heartbeats, expiry, held-out routing, submit."""

from datetime import timedelta

import pytest

from app.auth.models import Role
from app.db import utcnow
from app.prompts.models import PromptKind, Split, UseCase
from app.queue import service as queue
from app.queue.models import Assignment, AssignmentState, Task, TaskKind, TaskState
from tests.factories import make_candidates, make_prompt, make_task, make_user


def _lapse(db, lease: queue.Lease) -> None:
    db.get(Assignment, lease.id).expires_at = utcnow() - timedelta(seconds=1)
    db.flush()


def test_next_task_returns_highest_priority_then_oldest(db):
    low = make_task(db, priority=0)
    high_old = make_task(db, priority=5)
    make_task(db, priority=5)
    user = make_user(db)
    got = queue.next_task(db=db, user=user, kind=TaskKind.demonstrate)
    assert got is not None and got.task_id == high_old.id
    queue.complete(db=db, assignment=got)
    second = queue.next_task(db=db, user=user, kind=TaskKind.demonstrate)
    assert second is not None and second.task_id not in (low.id, high_old.id)


def test_next_task_returns_same_live_lease_on_repeat(db):
    make_task(db, overlap=3)
    make_task(db, overlap=3)
    user = make_user(db)
    first = queue.next_task(db=db, user=user, kind=TaskKind.demonstrate)
    again = queue.next_task(db=db, user=user, kind=TaskKind.demonstrate)
    assert first is not None and again is not None and again.id == first.id
    assert db.get(Task, first.task_id).leased_labels == 1


def test_next_task_filters_by_kind(db):
    make_task(db, TaskKind.demonstrate, priority=9)
    rank = make_task(db, TaskKind.rank)
    got = queue.next_task(db=db, user=make_user(db), kind=TaskKind.rank)
    assert got is not None and got.task_id == rank.id


def test_next_task_none_when_overlap_met_by_live_leases(db):
    make_task(db, overlap=2)
    a, b, c = (make_user(db) for _ in range(3))
    assert queue.next_task(db=db, user=a, kind=TaskKind.demonstrate) is not None
    assert queue.next_task(db=db, user=b, kind=TaskKind.demonstrate) is not None
    assert queue.next_task(db=db, user=c, kind=TaskKind.demonstrate) is None


def test_complete_closes_task_when_overlap_met(db):
    task = make_task(db, overlap=2)
    for _ in range(2):
        user = make_user(db)
        got = queue.next_task(db=db, user=user)
        live = queue.live_assignment(db=db, user=user, task_id=task.id, assignment_id=got.id)
        queue.complete(db=db, assignment=live)
    db.refresh(task)
    assert (task.state, task.done_labels, task.leased_labels) == (TaskState.closed, 2, 0)
    assert task.closed_at is not None


def test_next_task_never_offers_submitted_task_again(db):
    make_task(db, overlap=3)
    user = make_user(db)
    got = queue.next_task(db=db, user=user)
    queue.complete(db=db, assignment=got)
    assert queue.next_task(db=db, user=user) is None


def test_complete_twice_conflicts(db):
    task = make_task(db)
    user = make_user(db)
    got = queue.next_task(db=db, user=user)
    queue.complete(db=db, assignment=got)
    with pytest.raises(queue.QueueError) as err:
        queue.live_assignment(db=db, user=user, task_id=task.id, assignment_id=got.id)
    assert err.value.status == 409


def test_skip_frees_slot_and_never_reoffers(db):
    task = make_task(db, overlap=1)
    user, other = make_user(db), make_user(db)
    got = queue.next_task(db=db, user=user)
    queue.skip(db=db, user=user, assignment_id=got.id, reason="unclear prompt")
    assert db.get(Assignment, got.id).state == AssignmentState.skipped
    assert queue.next_task(db=db, user=user) is None
    taken = queue.next_task(db=db, user=other)
    assert taken is not None and taken.task_id == task.id


def test_skip_twice_changes_nothing(db):
    task = make_task(db, overlap=2)
    user = make_user(db)
    got = queue.next_task(db=db, user=user)
    queue.skip(db=db, user=user, assignment_id=got.id, reason=None)
    queue.skip(db=db, user=user, assignment_id=got.id, reason=None)
    db.refresh(task)
    assert task.leased_labels == 0


def test_expired_lease_frees_slot_lazily(db):
    task = make_task(db, overlap=1)
    first, second = make_user(db), make_user(db)
    got = queue.next_task(db=db, user=first)
    assert queue.next_task(db=db, user=second) is None
    _lapse(db, got)
    taken = queue.next_task(db=db, user=second)
    assert taken is not None and taken.task_id == task.id
    assert db.get(Assignment, got.id).state == AssignmentState.expired
    with pytest.raises(queue.QueueError) as err:
        queue.live_assignment(db=db, user=first, task_id=task.id, assignment_id=got.id)
    assert err.value.status == 409


def test_expire_leases_counts_and_releases(db):
    tasks = [make_task(db, overlap=1) for _ in range(3)]
    users = [make_user(db) for _ in range(3)]
    leases = [queue.next_task(db=db, user=u) for u in users]
    for lease in leases[:2]:
        _lapse(db, lease)
    assert queue.expire_leases(db=db) == 2
    assert sum(db.get(Task, t.id).leased_labels for t in tasks) == 1


def test_heartbeat_extends_live_lease(db):
    make_task(db)
    user = make_user(db)
    got = queue.next_task(db=db, user=user)
    db.get(Assignment, got.id).expires_at = utcnow() + timedelta(seconds=5)
    db.flush()
    beat = queue.heartbeat(db=db, user=user, assignment_id=got.id)
    assert beat.expires_at > utcnow() + timedelta(minutes=29)
    # The loaded assignment reads the extended lease, not the one it had cached.
    assert db.get(Assignment, got.id).expires_at == beat.expires_at


def test_heartbeat_after_expiry_conflicts(db):
    make_task(db)
    user = make_user(db)
    got = queue.next_task(db=db, user=user)
    _lapse(db, got)
    with pytest.raises(queue.QueueError) as err:
        queue.heartbeat(db=db, user=user, assignment_id=got.id)
    assert err.value.status == 409


def test_other_users_assignment_is_not_found(db):
    task = make_task(db)
    owner, intruder = make_user(db), make_user(db)
    got = queue.next_task(db=db, user=owner)
    for call in (
        lambda: queue.heartbeat(db=db, user=intruder, assignment_id=got.id),
        lambda: queue.skip(db=db, user=intruder, assignment_id=got.id, reason=None),
        lambda: queue.get_assignment(db=db, user=intruder, assignment_id=got.id),
        lambda: queue.live_assignment(db=db, user=intruder, task_id=task.id,
                                      assignment_id=got.id),
    ):
        with pytest.raises(queue.QueueError) as err:
            call()
        assert err.value.status == 404


def test_held_out_labeler_gets_only_rate_tasks(db):
    make_task(db, TaskKind.demonstrate, priority=10)
    make_task(db, TaskKind.rank, priority=10)
    rate = make_task(db, TaskKind.rate)
    held = make_user(db, held_out=True)
    assert queue.next_task(db=db, user=held, kind=TaskKind.demonstrate) is None
    assert queue.next_task(db=db, user=held, kind=TaskKind.rank) is None
    got = queue.next_task(db=db, user=held)
    assert got is not None and got.task_id == rate.id


def test_rank_display_order_is_per_assignment_permutation(db):
    task = make_task(db, TaskKind.rank, overlap=12, k=9)
    orders = []
    for _ in range(12):
        got = queue.next_task(db=db, user=make_user(db), kind=TaskKind.rank)
        assert sorted(got.display_order) == sorted(task.candidate_ids)
        orders.append(tuple(got.display_order))
    assert len(set(orders)) > 1  # 12 draws of 9! orders all equal: ~1e-60


def test_gold_task_is_served_without_its_answer(db):
    task = make_task(db, TaskKind.rate, gold=True, gold_answer={"likert": 7})
    user = make_user(db)
    got = queue.next_task(db=db, user=user, kind=TaskKind.rate)
    assert got is not None and got.task_id == task.id
    payload = queue.task_payload(db=db, assignment=got)
    assert "gold" not in str(payload) and "likert" not in str(payload)
    assert [c["id"] for c in payload["candidates"]] == task.candidate_ids


def test_create_rank_task_rejects_bad_candidate_sets(db):
    prompt, other = make_prompt(db), make_prompt(db)
    ids = [c.id for c in make_candidates(db, prompt, 5)]
    stray = make_candidates(db, other, 1)[0].id
    for bad in (ids[:3], ids[:4] + [ids[0]], ids[:4] + [stray]):
        with pytest.raises(queue.QueueError):
            queue.create_rank_task(db=db, prompt_id=prompt.id, candidate_ids=bad, overlap=1)
    with pytest.raises(queue.QueueError):
        queue.create_rank_task(db=db, prompt_id=prompt.id, candidate_ids=ids, overlap=1,
                               gold=True)
    task = queue.create_rank_task(db=db, prompt_id=prompt.id, candidate_ids=ids, overlap=3)
    assert task.candidate_ids == ids and task.required_labels == 3


def test_create_demonstrate_tasks_for_train_prompts_once(db):
    train = [make_prompt(db) for _ in range(3)]
    make_prompt(db, split=Split.valid)
    assert queue.create_demonstrate_tasks_for_train_prompts(db=db, overlap=2, priority=1) == 3
    assert queue.create_demonstrate_tasks_for_train_prompts(db=db, overlap=2) == 0
    user = make_user(db)
    got = queue.next_task(db=db, user=user, kind=TaskKind.demonstrate)
    assert got is not None and got.task_id and db.get(Task, got.task_id).prompt_id in {
        p.id for p in train}


def test_create_write_prompt_tasks_per_use_case(db):
    db.add_all([UseCase(name="travel"), UseCase(name="cooking"), UseCase(name="old", active=False)])
    db.flush()
    tasks = queue.create_write_prompt_tasks(db=db, prompt_kind=PromptKind.user_based, count=2)
    assert len(tasks) == 4 and all(t.params["prompt_kind"] == "user_based" for t in tasks)
    user = make_user(db, Role.researcher)
    got = queue.next_task(db=db, user=user, kind=TaskKind.write_prompt)
    payload = queue.task_payload(db=db, assignment=got)
    assert payload["prompt"] is None
    assert payload["params"]["use_case"]["name"] in {"travel", "cooking"}


def test_beat_task_expires_committed_leases(committed_db):
    from app.queue.tasks import expire_leases

    db = committed_db
    task = make_task(db, overlap=1)
    got = queue.next_task(db=db, user=make_user(db))
    _lapse(db, got)
    db.commit()
    assert expire_leases.run() == 1
    assert expire_leases.run() == 0  # safe to run twice
    db.expire_all()
    assert db.get(Task, task.id).leased_labels == 0


def test_live_assignment_for_wrong_task_is_not_found(db):
    task, other = make_task(db), make_task(db)
    user = make_user(db)
    got = queue.next_task(db=db, user=user)
    assert got.task_id == task.id
    with pytest.raises(queue.QueueError) as err:
        queue.live_assignment(db=db, user=user, task_id=other.id, assignment_id=got.id)
    assert err.value.status == 404
