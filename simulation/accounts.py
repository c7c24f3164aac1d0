"""The simulated labelers' accounts: one user and one bearer token each.

Two ways, because making users takes an admin:

- beside the database (the default): through the auth service on the database the app's
  settings name (RLHF_DATABASE_URL), as `rlhf-studio users create` and `tokens create` do;
- over HTTP with `--admin-token`: the admin creates each user (or resets its password when
  it exists), then the labeler logs in like a browser and creates its own token.

Users are `sim-<n>@<domain>` and are reused by later runs (their tokens are new each run), so
repeated runs do not pile up accounts; a reused labeler is never offered a task it already
did, as for any person.
"""

import re
import secrets
from dataclasses import dataclass

import httpx

DOMAIN = "simulated.example.com"
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@dataclass(frozen=True)
class Account:
    email: str
    token: str
    token_id: int
    role: str = "labeler"


def email_of(n: int, role: str = "labeler") -> str:
    """The n-th simulated account's email (researchers drive rounds in `simulate loop`)."""
    return f"sim-{n}@{DOMAIN}" if role == "labeler" else f"sim-{role}-{n}@{DOMAIN}"


def from_database(n: int, role: str = "labeler") -> list[Account]:
    """n accounts with fresh tokens, made through the auth service on the app's database."""
    from app.auth import service as auth
    from app.auth.models import Role, User
    from app.db import session_scope

    accounts, shared_hash = [], None
    with session_scope() as db:
        for i in range(n):
            email = email_of(i, role)
            user = auth.get_user_by_email(db=db, email=email)
            if user is None:
                # These accounts sign in only with tokens, so one hash of a random secret
                # nobody keeps serves the batch: argon2 costs up to a second of CPU per user
                # on a busy machine, minutes for a 200-labeler load test.
                shared_hash = shared_hash or auth.hash_password(secrets.token_urlsafe(32))
                user = User(email=auth.normalise_email(email), name=f"Simulated {role} {i}",
                            role=Role(role), password_hash=shared_hash, active=True,
                            held_out=False)
                db.add(user)
                db.flush()
            elif not user.active or user.role != Role(role):
                auth.update_user(db=db, user=user, active=True, role=Role(role))
            token, clear = auth.create_token(db=db, user=user, name="simulate")
            accounts.append(Account(email=email, token=clear, token_id=token.id, role=role))
    return accounts


class SetupError(RuntimeError):
    """Accounts could not be made over HTTP; the message says what the server answered."""


def over_http(url: str, admin_token: str, n: int, role: str = "labeler") -> list[Account]:
    """n accounts made through the API with an admin's token (see the module docstring)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=url, headers=admin, timeout=30) as api:
        resp = api.get("/api/v1/users")
        _check(resp, "list users (is the token an admin's?)")
        existing = {u["email"]: u["id"] for u in resp.json()}
        accounts = []
        for i in range(n):
            email, password = email_of(i, role), secrets.token_urlsafe(16)
            if email in existing:
                _check(api.patch(f"/api/v1/users/{existing[email]}", json={
                    "password": password, "active": True, "role": role,
                    "keep_tokens": True}), f"reset {email}")  # another pool may be using them
            else:
                _check(api.post("/api/v1/users", json={
                    "email": email, "password": password, "role": role,
                    "name": f"Simulated {role} {i}"}), f"create {email}")
            token_id, clear = _login_token(url, email, password)
            accounts.append(Account(email=email, token=clear, token_id=token_id, role=role))
    return accounts


def _login_token(url: str, email: str, password: str) -> tuple[int, str]:
    """Log in as a browser does (CSRF token from the page) and create an API token."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        page = browser.get("/login")
        _check(page, "open the login page")
        resp = browser.post("/login", data={"email": email, "password": password,
                                            "csrf_token": _csrf(page.text), "next": "/"})
        if resp.status_code != 303:
            raise SetupError(f"log in as {email}: HTTP {resp.status_code}")
        page = browser.get("/account")
        _check(page, "open the account page")
        resp = browser.post("/api/v1/tokens", json={"name": "simulate"},
                            headers={"X-CSRF-Token": _csrf(page.text)})
        _check(resp, f"create a token for {email}")
        return int(resp.json()["id"]), str(resp.json()["token"])


def _csrf(html: str) -> str:
    match = _CSRF.search(html)
    if match is None:
        raise SetupError("the page carries no CSRF token")
    return match.group(1)


def _check(resp: httpx.Response, what: str) -> None:
    if not resp.is_success:
        raise SetupError(f"{what}: HTTP {resp.status_code} {resp.text[:200]}")
