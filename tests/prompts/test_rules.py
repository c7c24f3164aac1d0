"""The data rules as pure functions: PII scrubbing, normalisation, split by end user."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.prompts import pii
from app.prompts.models import Split
from app.prompts.rules import ImportRules, normalise, split_for

WORDS = st.text(alphabet="abcdefghij klmnop,.!?", max_size=40)
EMAILS = st.builds(lambda a, b: f"{a}@{b}.com", st.from_regex(r"[a-z][a-z0-9.]{0,10}[a-z]",
                                                                 fullmatch=True),
                   st.from_regex(r"[a-z]{2,10}", fullmatch=True))


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        if pii._luhn(body + check):
            return body + check
    raise AssertionError


CARDS = st.from_regex(r"4[0-9]{14}", fullmatch=True).map(_luhn_complete)
IPS = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(before=WORDS, after=WORDS, email=EMAILS, card=CARDS, ip=IPS)
def test_scrub_removes_generated_pii(before, after, email, card, ip):
    text = f"{before} {email} {after} card {card} from {ip} {after}"
    clean, counts = pii.scrub(text)
    assert email not in clean and card not in clean and ip not in clean
    assert counts["email"] == 1 and counts["card"] == 1 and counts["ip"] == 1
    assert pii.find(clean) == {}  # nothing left to find: scrubbing is idempotent


@pytest.mark.parametrize(("text", "kind"), [
    ("reach me on +44 20 7946 0958 tonight", "phone"),
    ("my ssn is 078-05-1120", "ssn"),
    ("wire to DE89 3704 0044 0532 0130 00 please", "iban"),
    ("clone https://deploy:hunter2@git.example.com/repo.git", "url_credentials"),
    ("card 5555-5555-5555-4444 expires", "card"),
    ("host 2001:db8::8a2e:370:7334 is down", "ip"),
])
def test_scrub_finds_each_kind(text, kind):
    clean, counts = pii.scrub(text)
    assert counts == {kind: 1} and pii.PLACEHOLDERS[kind] in clean


@pytest.mark.parametrize("text", [
    "the meeting is on 14.06.2022 at 10:30", "it costs 1,299.99 dollars", "years 1990-2020",
    "card 4111 1111 1111 1112 fails luhn", "version 3.11 of python",
])
def test_scrub_leaves_ordinary_numbers(text):
    assert pii.scrub(text) == (text, {})


def test_scrub_respects_chosen_kinds():
    text = "mail a@b.com from 10.0.0.1"
    clean, counts = pii.scrub(text, kinds=["ip"])
    assert clean == "mail a@b.com from [IP]" and counts == {"ip": 1}


@given(st.text(max_size=60))
def test_normalise_ignores_case_space_and_punctuation(text):
    noisy = "  " + text.upper().replace(" ", " \t ") + "!!"
    assert normalise(noisy) == normalise(text)


@settings(max_examples=100)
@given(user=st.text(min_size=1, max_size=20), a=st.text(max_size=30), b=st.text(max_size=30),
       seed=st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
                    max_size=10))  # a seed the rules accept: no NUL, no lone surrogate
def test_split_depends_only_on_end_user(user, a, b, seed):
    rules = ImportRules(split_seed=seed)
    assert split_for(rules, end_user_id=user, normalised=a) == \
        split_for(rules, end_user_id=user, normalised=b)


def test_split_fractions_are_roughly_honoured():
    rules = ImportRules(train_fraction=0.6, valid_fraction=0.3)
    splits = [split_for(rules, end_user_id=f"u{i}", normalised="") for i in range(3000)]
    share = {s: splits.count(s) / len(splits) for s in Split}
    assert abs(share[Split.train] - 0.6) < 0.04 and abs(share[Split.valid] - 0.3) < 0.04


def test_rules_refuse_impossible_fractions_and_unknown_pii():
    with pytest.raises(ValidationError):
        ImportRules(train_fraction=0.9, valid_fraction=0.2)
    with pytest.raises(ValidationError):
        ImportRules(pii_kinds=["shoe_size"])
