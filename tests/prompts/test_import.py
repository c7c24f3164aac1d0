"""Importing prompts under the data rules, against the database."""

import json
import random
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from app.auth.models import Role
from app.prompts import pii
from app.prompts import service as prompts
from app.prompts.models import Prompt, PromptKind, PromptSource, Split, UseCase
from app.prompts.rules import ImportRules
from tests.factories import make_user


def _jsonl(*objs) -> bytes:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs).encode()


def _count(db) -> int:
    return db.scalar(select(func.count()).select_from(Prompt))


def test_import_reports_bad_lines_with_numbers_and_keeps_good_ones(db):
    data = _jsonl(
        {"text": "Write a haiku about autumn leaves", "category": "generation"},
        "{not json",
        {"end_user_id": "u1"},
        {"text": "Tell me a joke", "category": "comedy"},
        "",
        {"text": "Summarise this article please", "metadata": {"src": "x"}},
    )
    report = prompts.import_file(db=db, data=data, filename="p.jsonl")
    assert (report.accepted, report.rejected) == (2, 3)
    reasons = {i["line"]: i["reason"] for i in report.issues}
    assert set(reasons) == {2, 3, 4}
    assert "invalid JSON" in reasons[2] and "text" in reasons[3] and "comedy" in reasons[4]
    assert _count(db) == 2


def test_strict_import_with_a_bad_line_writes_nothing(db):
    data = _jsonl({"text": "A fine prompt"}, {"text": "x", "category": "nope"})
    with pytest.raises(prompts.ImportFailed) as err:
        prompts.import_file(db=db, data=data, filename="p.jsonl", strict=True)
    assert err.value.report.issues[0]["line"] == 2
    assert _count(db) == 0


def test_unreadable_file_is_refused(db):
    with pytest.raises(prompts.PromptError):
        prompts.import_file(db=db, data=b"\xff\xfe\x00bad", filename="p.jsonl")
    with pytest.raises(prompts.PromptError, match="text"):
        prompts.import_file(db=db, data=b"prompt,user\nhello,1\n", filename="p.csv")


def test_csv_import_reads_optional_columns(db):
    data = (b'text,end_user_id,category,metadata\n'
            b'"Hello, how are you?",u7,chat,"{""lang"": ""en""}"\n'
            b'Plain prompt without extras,,,\n')
    report = prompts.import_file(db=db, data=data, filename="p.csv")
    assert report.accepted == 2
    first = db.scalar(select(Prompt).where(Prompt.end_user_id == "u7"))
    assert first.category == "chat" and first.meta == {"lang": "en"}


def test_duplicates_merge_exact_and_long_prefix(db):
    base = "Please write a detailed product description for a new ergonomic office chair"
    report = prompts.import_objects(db=db, objects=[
        {"text": base},
        {"text": "  PLEASE write a detailed product description, for a new ergonomic "
                 "office chair!"},
        {"text": base + " with wheels and a headrest"},
        {"text": "Please write a short poem"},
    ], rules=ImportRules(prefix_chars=60))
    assert (report.accepted, report.merged) == (2, 2)
    again = prompts.import_objects(db=db, objects=[{"text": base[:70] + " in French"}])
    assert again.merged == 1 and "prefix" in again.issues[0]["reason"]
    short_prefix = prompts.import_objects(db=db, objects=[{"text": base[:70] + " in French"}],
                                          rules=ImportRules(prefix_chars=100))
    assert short_prefix.accepted == 1


def test_cap_counts_prompts_already_stored(db):
    rules = ImportRules(max_per_end_user=5)
    first = prompts.import_objects(db=db, rules=rules, objects=[
        {"text": f"question number {i} from the same person", "end_user_id": "heavy"}
        for i in range(4)])
    second = prompts.import_objects(db=db, rules=rules, objects=[
        {"text": f"another question {i} from the same person", "end_user_id": "heavy"}
        for i in range(3)] + [{"text": "someone else asks", "end_user_id": "light"}])
    assert (first.accepted, second.accepted, second.capped) == (4, 2, 2)
    assert db.scalar(select(func.count()).where(Prompt.end_user_id == "heavy")) == 5


def test_default_cap_is_200_per_end_user(db):
    rows = [{"text": f"prompt {i} words", "end_user_id": "busy"} for i in range(205)]
    report = prompts.import_objects(db=db, objects=rows)
    assert (report.accepted, report.capped) == (200, 5)


@pytest.mark.slow
def test_splits_disjoint_by_end_user_and_stable_across_imports(db):
    rng = random.Random(7)
    users = [f"user-{i}" for i in range(40)]
    rows = [{"text": f"prompt {i} about {rng.random()}", "end_user_id": rng.choice(users)}
            for i in range(300)]
    prompts.import_objects(db=db, objects=rows[:150])
    # A later import with another seed must not move users who are already stored.
    prompts.import_objects(db=db, objects=rows[150:],
                           rules=ImportRules(split_seed="other", train_fraction=0.34,
                                             valid_fraction=0.33))
    seen = defaultdict(set)
    for user, split in db.execute(select(Prompt.end_user_id, Prompt.split)):
        seen[user].add(split)
    assert all(len(s) == 1 for s in seen.values())
    assert len({next(iter(s)) for s in seen.values()}) > 1  # it really splits


def test_pii_is_gone_from_train_and_counted(db):
    rows = [{"text": f"Email me at person{i}@example.org or call +1 415 555 01{i:02d}",
             "end_user_id": f"pii-{i}"} for i in range(40)]
    prompts.import_objects(db=db, objects=rows)
    stored = db.scalars(select(Prompt)).all()
    train = [p for p in stored if p.split == Split.train]
    assert train and all(pii.find(p.text) == {} for p in train)
    assert all(p.pii_counts == {"email": 1, "phone": 1} for p in train)
    assert all("[EMAIL]" in p.text for p in train)
    held = [p for p in stored if p.split != Split.train]
    assert held and all("@example.org" in p.text for p in held)


def test_labeler_prompt_follows_rules_and_refuses_duplicates(db):
    user = make_user(db, Role.labeler)
    prompt = prompts.create_labeler_prompt(
        db=db, user=user, text="Write a limerick about a cat named Bob", prompt_kind="plain")
    assert prompt.source == PromptSource.labeler and prompt.meta["prompt_kind"] == "plain"
    assert prompt.end_user_id == f"labeler-{user.id}"
    with pytest.raises(prompts.PromptError) as err:
        prompts.create_labeler_prompt(db=db, user=user, text="write a LIMERICK about a cat "
                                      "named bob!", prompt_kind=PromptKind.few_shot)
    assert err.value.status == 409
    with pytest.raises(prompts.PromptError):
        prompts.create_labeler_prompt(db=db, user=user, text="Something new entirely",
                                      prompt_kind="user_based", use_case_id=None)
    use_case = UseCase(name="travel planning")
    db.add(use_case)
    db.flush()
    based = prompts.create_labeler_prompt(db=db, user=user, text="Plan a week in Lisbon",
                                          prompt_kind="user_based", use_case_id=use_case.id)
    assert based.meta["use_case_id"] == use_case.id
