"""Importing model outputs: each bad candidate row is refused with why, and makes nothing."""

from sqlalchemy import func, select

from app.prompts.models import Candidate, Prompt
from app.queue.candidates import import_candidates


def test_import_candidates_refuses_each_bad_row_with_why(db):
    good = [{"text": "an answer", "model": "sft-1"}]
    rows = [
        {"prompt": "Name a colour", "candidates": []},
        {"prompt": "Name a colour", "candidates": [{"text": f"c{i}"} for i in range(100)]},
        {"prompt": "Name a colour", "candidates": [*good, {"text": "   "}]},
        {"prompt": "Name a colour", "candidates": [{"text": "x" * 20_001}]},
        {"prompt": "Name a colour", "candidates": [{"text": "blue", "model": 7}]},
        {"prompt": "Name a colour", "candidates": [{"text": "blue\x00"}]},
    ]
    report = import_candidates(db=db, objects=enumerate(rows, start=1))
    reasons = [issue["reason"] for issue in report.issues]
    assert reasons[0] == "`candidates` must be a non-empty list"
    assert reasons[1].startswith("more than ") and reasons[1].endswith(" candidates")
    assert reasons[2] == "candidate 2 needs a non-empty `text`"
    assert reasons[3].startswith("candidate 1 is longer than ")
    assert reasons[4] == "candidate 1: `model` must be a string of at most 200 characters"
    assert reasons[5].startswith("candidate 1: the text ")
    assert report.rejected == len(rows)
    assert db.scalar(select(func.count()).select_from(Candidate)) == 0
    assert db.scalar(select(func.count()).select_from(Prompt)) == 0


def test_import_candidates_keeps_the_first_of_repeated_texts(db):
    rows = [{"prompt": "Name a colour", "candidates": [
        {"text": "blue", "model": "a"}, {"text": "blue", "model": "b"}, {"text": "red"}]}]
    report = import_candidates(db=db, objects=enumerate(rows, start=1))
    assert report.rejected == 0 and report.candidates_created == 2
    stored = dict(db.execute(select(Candidate.text, Candidate.model)).all())
    assert stored == {"blue": "a", "red": None}
