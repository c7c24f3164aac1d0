"""Device cookies (OWASP's answer to lockouts): a browser that has logged in to an account
is throttled on its own when it logs in to that account again.

Failed logins are counted per address, per account and per (account, address): an office
behind one NAT shares its address, so 60 made-up emails from there locked every real user
of the office out, and anyone guessing at an account locked its owner out. A successful
login leaves a cookie naming a random device id, signed with the secret key and bound to
the account; a login that presents it for that account is counted only against that device
(RLHF_LOGIN_MAX_FAILURES per window), so the guesses of others do not reach it, while a
guesser, who has no such cookie for the account, meets the same limits as before.
"""

import hashlib
import hmac
import secrets

from starlette.responses import Response

from app.config import get_settings

COOKIE = "rlhf_device"
MAX_AGE_S = 365 * 24 * 3600


def _signature(device: str, email: str) -> str:
    key = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(key, f"device|{device}|{email}".encode(), hashlib.sha256).hexdigest()


def issue(email: str) -> str:
    """A new device cookie's value for a browser that just logged in as `email`."""
    device = secrets.token_urlsafe(16)
    return f"{device}.{_signature(device, email)}"


def remember(response: Response, email: str) -> None:
    """Give the browser a device cookie for `email` (after it logged in)."""
    response.set_cookie(COOKIE, issue(email.strip().lower()), max_age=MAX_AGE_S, httponly=True,
                        samesite="lax", secure=get_settings().secure_cookies)


def device_for(cookie: str | None, email: str) -> str | None:
    """The device id the cookie names, if it is one this server issued for `email`."""
    if not cookie or cookie.count(".") != 1:
        return None
    device, signature = cookie.split(".")
    if not device or not hmac.compare_digest(signature, _signature(device, email)):
        return None
    return device
