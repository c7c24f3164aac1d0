"""Small factories for test data, and a login helper for the HTTP client."""

import itertools
import re

from sqlalchemy.orm import Session

from app.auth import service as auth
from app.auth.models import Role, User

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


def make_user(db: Session, role: Role | str = Role.labeler, *, held_out: bool = False,
              email: str | None = None, password: str = PASSWORD) -> User:
    """A user with a unique email and the shared test password."""
    email = email or f"{Role(role).value}{next(_seq)}@example.com"
    return auth.create_user(db=db, email=email, password=password, role=Role(role),
                            held_out=held_out)


def csrf_from(html: str) -> str:
    """The CSRF token a page carries in its <meta name="csrf-token">."""
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client, user: User, password: str = PASSWORD) -> str:  # type: ignore[no-untyped-def]
    """Log the client in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    token = csrf_from(page.text)
    resp = client.post("/login", data={"email": user.email, "password": password,
                                       "csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    return csrf_from(client.get("/account").text)
