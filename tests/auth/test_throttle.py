"""The login throttle: atomic under concurrency, per account, per (account, address) and,
looser, per address, so made-up emails from a shared address lock no real user out."""

import asyncio
import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from app.auth import service
from app.auth.models import LoginThrottle
from app.config import get_settings
from app.db import utcnow
from tests.factories import PASSWORD, csrf_from, make_user


def _attempt(db, email: str, password: str, ip: str) -> str:  # type: ignore[no-untyped-def]
    try:
        service.authenticate(db=db, email=email, password=password, ip=ip)
    except service.Throttled:
        return "throttled"
    except service.AuthError:
        return "wrong"
    return "ok"


@pytest.mark.postgres_only
def test_concurrent_wrong_passwords_are_checked_only_up_to_the_limit(app, committed_db):
    """40 wrong passwords at once through the real app: the limit's worth get 401."""
    user = make_user(committed_db)
    committed_db.commit()
    limit = get_settings().login_max_failures

    async def attack() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            page = await client.get("/login")
            csrf = csrf_from(page.text)
            form = {"email": user.email, "password": "wrong password", "csrf_token": csrf}
            answers = await asyncio.gather(*(client.post("/login", data=form)
                                             for _ in range(40)))
        return [a.status_code for a in answers]

    codes: list[int] = []
    # An event loop of its own: other tests may leave one running on this thread.
    worker = threading.Thread(target=lambda: codes.extend(asyncio.run(attack())))
    worker.start()
    worker.join()
    assert sorted(codes) == [401] * limit + [429] * (40 - limit)


def test_made_up_emails_from_a_shared_address_do_not_lock_a_real_user_out(client, db):
    user = make_user(db)
    csrf = csrf_from(client.get("/login").text)
    for n in range(get_settings().login_max_failures * 2):
        resp = client.post("/login", data={"email": f"nobody{n}@example.com",
                                           "password": "guess-guess", "csrf_token": csrf})
        assert resp.status_code == 401
    resp = client.post("/login", data={"email": user.email, "password": PASSWORD,
                                       "csrf_token": csrf}, follow_redirects=False)
    assert resp.status_code == 303


def test_an_address_spraying_many_accounts_is_throttled_at_its_looser_limit(db, monkeypatch):
    monkeypatch.setattr(get_settings(), "login_max_failures_address", 8)
    user = make_user(db)
    results = [_attempt(db, f"nobody{n}@example.com", "guess-guess", "10.0.0.1")
               for n in range(8)]
    assert results == ["wrong"] * 8
    assert _attempt(db, user.email, PASSWORD, "10.0.0.1") == "throttled"
    assert _attempt(db, user.email, PASSWORD, "10.0.0.2") == "ok"  # other addresses are not


def test_per_account_and_address_then_per_account_from_anywhere(db, monkeypatch):
    monkeypatch.setattr(get_settings(), "login_max_failures_account", 7)
    user = make_user(db)
    assert [_attempt(db, user.email, "wrong-wrong", "10.0.0.1") for _ in range(5)] == \
        ["wrong"] * 5
    # This address is done with this account; another address is not (yet).
    assert _attempt(db, user.email, PASSWORD, "10.0.0.1") == "throttled"
    assert _attempt(db, user.email, "wrong-wrong", "10.0.0.2") == "wrong"
    assert _attempt(db, user.email, "wrong-wrong", "10.0.0.3") == "wrong"  # the 7th
    assert _attempt(db, user.email, PASSWORD, "10.0.0.4") == "throttled"
    assert _attempt(db, user.email, PASSWORD, "10.0.0.5") == "throttled"


def test_a_right_password_clears_the_account_and_takes_its_attempt_back(db):
    user = make_user(db)
    for _ in range(4):
        assert _attempt(db, user.email, "wrong-wrong", "10.0.0.1") == "wrong"
    assert _attempt(db, user.email, PASSWORD, "10.0.0.1") == "ok"
    counts = {row.key: row.failures for row in db.query(LoginThrottle)}
    assert counts == {"address:10.0.0.1": 4}
    # The account starts afresh: five more failures before a throttle.
    assert [_attempt(db, user.email, "wrong-wrong", "10.0.0.1") for _ in range(5)] == \
        ["wrong"] * 5
    assert _attempt(db, user.email, PASSWORD, "10.0.0.1") == "throttled"


def test_a_window_that_ended_starts_again(db):
    user = make_user(db)
    for _ in range(6):
        _attempt(db, user.email, "wrong-wrong", "10.0.0.1")
    assert _attempt(db, user.email, PASSWORD, "10.0.0.1") == "throttled"
    window = timedelta(seconds=get_settings().login_window_s)
    db.execute(update(LoginThrottle).values(window_start=utcnow() - window))
    assert _attempt(db, user.email, PASSWORD, "10.0.0.1") == "ok"


def test_refused_attempts_do_not_count_towards_the_other_limits(db):
    """Someone retrying a throttled account does not use up the address's allowance."""
    user, colleague = make_user(db), make_user(db)
    for _ in range(5):
        _attempt(db, user.email, "wrong-wrong", "10.0.0.1")
    for _ in range(60):
        assert _attempt(db, user.email, PASSWORD, "10.0.0.1") == "throttled"
    counts = {row.key: row.failures for row in db.query(LoginThrottle)}
    assert counts["address:10.0.0.1"] == 5 and counts[f"account:{user.email}"] == 5
    assert _attempt(db, colleague.email, PASSWORD, "10.0.0.1") == "ok"
