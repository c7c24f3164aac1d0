"""Campaign creation, the compare tasks it makes, and how the queue hands them out."""

import pytest
from sqlalchemy import func, select

from app.auth.models import Role
from app.evaluation import service
from app.evaluation.models import Evaluation, EvaluationItem
from app.prompts.models import Candidate, Prompt, Split
from app.queue import service as queue
from app.queue.models import Assignment, Task, TaskKind
from tests.evaluation.factories import (
    campaign,
    make_prompts,
    make_version,
    prompts_snapshot,
    spec,
)
from tests.factories import make_user


def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(select(func.count()).select_from(model)) or 0


def test_create_uses_only_test_prompts_and_records_sampling(db):
    make_prompts(db, 5, Split.train)
    tests = make_prompts(db, 6)
    sft, policy = make_version(db, "sft"), make_version(db, "policy")
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=sft.id, n_prompts=4, overlap=2,
        sampling={"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 64, "seed": 3}))
    assert ev.state == "generating" and ev.judges == "held_out"
    assert set(ev.prompt_ids) <= {p.id for p in tests} and len(ev.prompt_ids) == 4
    assert ev.sampling == {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 64, "seed": 3}
    assert ev.provenance["split"] == "test"


def test_create_excludes_prompts_a_version_or_its_parent_trained_on(db):
    seen = make_prompts(db, 3)  # test-split prompts that a snapshot nonetheless held
    snap = prompts_snapshot(db, max_prompt_id=seen[-1].id)
    fresh = make_prompts(db, 2)
    sft = make_version(db, "sft", snapshot=snap)
    policy = make_version(db, "policy", parent=sft)
    base = make_version(db, "base")
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=2))
    assert sorted(ev.prompt_ids) == [p.id for p in fresh]
    assert snap.id in ev.provenance["snapshot_ids"]
    with pytest.raises(service.EvaluationError, match="Only 2 test prompts"):
        service.create_evaluation(db=db, user=None, spec=spec(
            model_ids=[policy.id], baseline_id=base.id, n_prompts=3))
    with pytest.raises(service.EvaluationError, match="training data"):
        service.create_evaluation(db=db, user=None, spec=spec(
            model_ids=[policy.id], baseline_id=base.id, n_prompts=1, prompt_ids=[seen[0].id]))


def test_a_policys_ppo_prompts_snapshot_leaves_its_test_rows_eligible(db):
    """PPO rolls out on a prompts snapshot's train rows and only measures its test rows: a
    round's policy can be judged on the test prompts that existed when it was trained."""
    train = make_prompts(db, 2, Split.train)
    measured = make_prompts(db, 3)
    snap = prompts_snapshot(db, max_prompt_id=measured[-1].id)
    policy = make_version(db, "policy", parent=make_version(db, "sft"), snapshot=snap)
    base = make_version(db, "base")
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=3))
    assert sorted(ev.prompt_ids) == [p.id for p in measured]
    with pytest.raises(service.EvaluationError, match="training data"):
        service.create_evaluation(db=db, user=None, spec=spec(
            model_ids=[policy.id], baseline_id=base.id, n_prompts=1, prompt_ids=[train[0].id]))
    # a baseline that trained on the same snapshot's every row (an SFT, say) leaves none
    sft = make_version(db, "sft", snapshot=snap)
    with pytest.raises(service.EvaluationError, match="test prompts"):
        service.create_evaluation(db=db, user=None, spec=spec(
            model_ids=[policy.id], baseline_id=sft.id, n_prompts=1))
    # a policy that rolled out on every split trained on them
    policy.config = {"prompt_split": "all"}
    db.flush()
    with pytest.raises(service.EvaluationError, match="test prompts"):
        service.create_evaluation(db=db, user=None, spec=spec(
            model_ids=[policy.id], baseline_id=base.id, n_prompts=1))


def test_create_excludes_prompts_the_reward_model_behind_a_policy_trained_on(db):
    from app.jobs.models import Job

    seen = make_prompts(db, 2)
    rm = make_version(db, "rm", snapshot=prompts_snapshot(db, max_prompt_id=seen[-1].id))
    fresh = make_prompts(db, 1)
    job = Job(kind="ppo", config={}, inputs={"reward_model": {"id": rm.id, "path": rm.path}},
              outputs={}, state="succeeded", progress=1.0)
    db.add(job)
    db.flush()
    policy = make_version(db, "policy")
    policy.job_id = job.id
    base = make_version(db, "base")
    db.flush()
    ev = service.create_evaluation(db=db, user=None, spec=spec(
        model_ids=[policy.id], baseline_id=base.id, n_prompts=1))
    assert ev.prompt_ids == [fresh[0].id]


@pytest.mark.parametrize("case", ["same", "not_policy", "rm_baseline", "too_many", "missing",
                                  "train_prompt", "duplicate"])
def test_bad_campaign_is_refused_and_creates_nothing(db, case):
    train = make_prompts(db, 1, Split.train)
    make_prompts(db, 3)
    sft, policy, rm = make_version(db, "sft"), make_version(db, "policy"), make_version(db, "rm")
    body = {"model_ids": [policy.id], "baseline_id": sft.id, "n_prompts": 2}
    body.update({
        "same": {"model_ids": [sft.id], "baseline_id": sft.id},
        "not_policy": {"model_ids": [sft.id], "baseline_id": policy.id},
        "rm_baseline": {"baseline_id": rm.id},
        "too_many": {"n_prompts": 4},
        "missing": {"model_ids": [999_999]},
        "train_prompt": {"n_prompts": 1, "prompt_ids": [train[0].id]},
        "duplicate": {"model_ids": [policy.id, policy.id]},
    }[case])
    before = (_count(db, Evaluation), _count(db, Task), _count(db, Candidate))
    with pytest.raises(service.EvaluationError) as err:
        service.create_evaluation(db=db, user=None, spec=spec(**body))
    assert err.value.status == (404 if case == "missing" else 422)
    assert (_count(db, Evaluation), _count(db, Task), _count(db, Candidate)) == before


def test_items_become_compare_tasks_without_identical_pairs(db):
    make_prompts(db, 3)
    base, a, b = make_version(db, "sft"), make_version(db, "policy"), make_version(db, "policy")
    ev = campaign(db, None, candidates=[a, b], baseline=base, n=3, overlap=2,
                  texts={base.id: "Same text.", b.id: "Same   text. "})
    items = db.scalars(select(EvaluationItem).where(EvaluationItem.evaluation_id == ev.id)).all()
    assert len(items) == 3 and {i.model_id for i in items} == {a.id}  # b equals the baseline
    assert ev.identical_pairs == 3 and ev.state == "labeling"
    for item in items:
        task = db.get(Task, item.task_id)
        assert task.kind == TaskKind.compare and task.required_labels == 2
        assert sorted(task.candidate_ids) == sorted([item.baseline_candidate_id, item.candidate_id])
        assert db.get(Candidate, item.candidate_id).model_version_id == a.id
        assert db.get(Candidate, item.candidate_id).sampling_params == ev.sampling
    # Generation finishing twice makes nothing more.
    assert service.create_items(db=db, evaluation_id=ev.id, outputs={}) == []


def _lease_all(db, users, kind=TaskKind.compare):  # type: ignore[no-untyped-def]
    return [queue.next_task(db=db, user=u, kind=kind) for u in users]


def test_held_out_judges_by_default_and_others_never_get_those_items(db):
    make_prompts(db, 2)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    campaign(db, None, candidates=[policy], baseline=base, n=2)
    trainer = make_user(db, Role.labeler)
    assert queue.next_task(db=db, user=trainer, kind=TaskKind.compare) is None
    assert queue.next_task(db=db, user=trainer) is None  # "any" never hands out compare
    judge = make_user(db, Role.labeler, held_out=True)
    lease = queue.next_task(db=db, user=judge)  # held-out: comparisons first
    assert lease is not None and lease.kind == TaskKind.compare


def test_judges_all_lets_training_labelers_compare(db):
    make_prompts(db, 1)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    campaign(db, None, candidates=[policy], baseline=base, n=1, judges="all")
    trainer = make_user(db, Role.labeler)
    assert queue.next_task(db=db, user=trainer) is None
    assert queue.next_task(db=db, user=trainer, kind=TaskKind.compare) is not None


def test_slot_order_is_balanced_over_an_items_labelers_and_stored(db):
    make_prompts(db, 1)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    campaign(db, None, candidates=[policy], baseline=base, n=1, overlap=6)
    judges = [make_user(db, Role.labeler, held_out=True) for _ in range(6)]
    leases = _lease_all(db, judges)
    task = db.get(Task, leases[0].task_id)
    firsts = [lease.display_order[0] for lease in leases]
    assert sorted(set(firsts)) == sorted(task.candidate_ids)
    assert firsts.count(task.candidate_ids[0]) == 3
    stored = db.scalars(select(Assignment.display_order)
                        .where(Assignment.task_id == task.id)).all()
    assert sorted(map(tuple, stored)) == sorted(tuple(lease.display_order) for lease in leases)


def test_order_is_balanced_across_items_too(db):
    make_prompts(db, 40)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    ev = campaign(db, None, candidates=[policy], baseline=base, n=40)
    items = {i.task_id: i for i in db.scalars(select(EvaluationItem)
                                              .where(EvaluationItem.evaluation_id == ev.id))}
    baseline_first = 0
    for _ in range(40):
        lease = queue.next_task(db=db, user=make_user(db, Role.labeler, held_out=True),
                                kind=TaskKind.compare)
        baseline_first += lease.display_order[0] == items[lease.task_id].baseline_candidate_id
    assert 10 <= baseline_first <= 30  # a fair coin per item, not always one side


def test_a_labeler_never_gets_an_item_twice(db):
    make_prompts(db, 2)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    campaign(db, None, candidates=[policy], baseline=base, n=2, overlap=3)
    judge = make_user(db, Role.labeler, held_out=True)
    seen = []
    while (lease := queue.next_task(db=db, user=judge, kind=TaskKind.compare)) is not None:
        seen.append(lease.task_id)
        queue.skip(db=db, user=judge, assignment_id=lease.id, reason=None)
    assert len(seen) == len(set(seen)) == 2


def test_prompts_in_a_campaign_are_test_split(db):
    make_prompts(db, 4, Split.valid)
    make_prompts(db, 2)
    base, policy = make_version(db, "sft"), make_version(db, "policy")
    ev = campaign(db, None, candidates=[policy], baseline=base, n=2)
    splits = set(db.scalars(select(Prompt.split).where(Prompt.id.in_(ev.prompt_ids))))
    assert splits == {Split.test}
