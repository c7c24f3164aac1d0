"""Device cookies: a browser that logged in to an account before is throttled on its own,
so failures from its shared address (or at its account, from elsewhere) do not lock the
account's owner out, while a guesser without the cookie meets every limit as before."""

from app.auth import devices
from app.config import get_settings
from tests.factories import PASSWORD, csrf_from, make_user


def _login(client, email: str, password: str) -> int:  # type: ignore[no-untyped-def]
    csrf = csrf_from(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": csrf}, follow_redirects=False).status_code


def _flood(client, n: int) -> None:  # type: ignore[no-untyped-def]
    """`n` failed logins at made-up accounts from the client's address (an office NAT)."""
    for i in range(n):
        assert _login(client, f"nobody{i}@x.io", "guess-guess") in (401, 429)


def test_made_up_emails_from_a_shared_address_do_not_lock_out_a_known_browser(client, db):
    user = make_user(db)
    assert _login(client, user.email, PASSWORD) == 303
    assert client.cookies.get(devices.COOKIE)
    client.cookies.delete("rlhf_session")  # logged out; the device cookie stays
    _flood(client, 60)  # past RLHF_LOGIN_MAX_FAILURES_ADDRESS (50)
    assert _login(client, user.email, PASSWORD) == 303


def test_a_browser_without_the_cookie_still_meets_the_address_limit(client, db):
    user = make_user(db)
    _flood(client, 60)
    assert _login(client, user.email, PASSWORD) == 429


def test_guesses_through_a_device_cookie_are_limited_on_that_device(client, db):
    user = make_user(db)
    assert _login(client, user.email, PASSWORD) == 303
    client.cookies.delete("rlhf_session")
    limit = get_settings().login_max_failures
    assert [_login(client, user.email, "wrong-guess") for _ in range(limit + 1)] == \
        [401] * limit + [429]
    assert _login(client, user.email, PASSWORD) == 429


def test_a_cookie_counts_only_for_its_account_and_only_as_signed(db):
    cookie = devices.issue("ada@example.com")
    device = cookie.split(".")[0]
    assert devices.device_for(cookie, "ada@example.com") == device
    assert devices.device_for(cookie, "bob@example.com") is None
    assert devices.device_for(f"{device}.{'0' * 64}", "ada@example.com") is None
    assert devices.device_for("garbage", "ada@example.com") is None
    assert devices.device_for(None, "ada@example.com") is None
