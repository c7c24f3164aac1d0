"""Accounts: password hashing, users, API tokens and login throttling. No HTTP here."""

import hashlib
import secrets
from datetime import timedelta
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, delete, func, select
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from app.auth.models import ApiToken, LoginAttempt, Role, User
from app.config import get_settings
from app.db import Sql, UTCDateTime, forget, utcnow
from app.errors import DomainError

# argon2id with RFC 9106's low-memory profile; the test suite uses the cheapest parameters.
_hasher = PasswordHasher.from_parameters(
    profiles.CHEAPEST if get_settings().env == "test" else profiles.RFC_9106_LOW_MEMORY
)


@lru_cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so both paths cost one argon2 verify.
    return _hasher.hash("not-a-real-password")


TOKEN_PREFIX = "rlhf_"
MIN_PASSWORD = 8


class AuthError(DomainError, ValueError):
    """A request the caller can fix: bad credentials, a taken email, a weak password."""


class Throttled(Exception):
    """Too many failed logins; retry after `wait_s` seconds."""

    def __init__(self, wait_s: int) -> None:
        super().__init__(f"Too many failed logins. Try again in {wait_s} seconds.")
        self.wait_s = wait_s


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher.hash(password)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"Passwords need at least {MIN_PASSWORD} characters.")


def normalise_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding spaces."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise AuthError(f"'{email}' is not an email address.")
    return email


def create_user(
    *, db: Session, email: str, password: str, role: Role, name: str = "", held_out: bool = False
) -> User:
    """A new active user; refuses a taken email or a short password."""
    email = normalise_email(email)
    _check_password(password)
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        raise AuthError(f"A user with email {email} already exists.")
    user = User(
        email=email, name=name, role=Role(role), password_hash=hash_password(password),
        held_out=held_out, active=True,
    )
    db.add(user)
    db.flush()
    return user


def get_user(*, db: Session, user_id: int) -> User | None:
    """The user with this id, or None."""
    return db.get(User, user_id)


def get_user_by_email(*, db: Session, email: str) -> User | None:
    """The user with this email, or None."""
    return db.scalar(select(User).where(User.email == email.strip().lower()))


def list_users(*, db: Session) -> list[User]:
    """Every user, by email."""
    return list(db.scalars(select(User).order_by(User.email)))


def update_user(
    *, db: Session, user: User, role: Role | None = None, active: bool | None = None,
    held_out: bool | None = None, name: str | None = None,
) -> User:
    """Change a user's role, activity, held-out flag or name."""
    if role is not None:
        user.role = Role(role)
    if active is not None:
        user.active = active
    if held_out is not None:
        user.held_out = held_out
    if name is not None:
        user.name = name
    db.flush()
    return user


def set_password(*, db: Session, user: User, password: str) -> None:
    """Replace a user's password."""
    _check_password(password)
    user.password_hash = hash_password(password)
    db.flush()


def _throttle_wait(*, db: Session, email: str, ip: str) -> int:
    settings = get_settings()
    since = utcnow() - timedelta(seconds=settings.login_window_s)
    rows = db.execute(
        select(func.count(), func.min(LoginAttempt.at)).where(
            LoginAttempt.at >= since, (LoginAttempt.email == email) | (LoginAttempt.ip == ip)
        )
    ).one()
    count, oldest = rows
    if count < settings.login_max_failures:
        return 0
    return max(1, int((oldest - since).total_seconds()) + 1)


def authenticate(*, db: Session, email: str, password: str, ip: str) -> User:
    """The active user with these credentials; raises Throttled or AuthError."""
    email = email.strip().lower()
    wait = _throttle_wait(db=db, email=email, ip=ip)
    if wait:
        raise Throttled(wait)
    user = get_user_by_email(db=db, email=email)
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
        ok = user is not None and user.active
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        db.add(LoginAttempt(email=email, ip=ip))
        db.flush()
        raise AuthError("Wrong email or password.")
    db.execute(delete(LoginAttempt).where(LoginAttempt.email == email))
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _token_hash(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, db: Session, user: User, name: str = "") -> tuple[ApiToken, str]:
    """A new API token; the clear token is returned once and never stored."""
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=_token_hash(clear), prefix=clear[:12])
    db.add(token)
    db.flush()
    return token, clear


def list_tokens(*, db: Session, user: User) -> list[ApiToken]:
    """A user's tokens, newest first."""
    return list(
        db.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc()))
    )


def revoke_token(*, db: Session, user: User, token_id: int) -> ApiToken:
    """Revoke one of this user's tokens (admins may revoke anyone's)."""
    token = db.get(ApiToken, token_id)
    if token is None or (token.user_id != user.id and user.role != Role.admin):
        raise AuthError("No such token.", status=404)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.flush()
    return token


# Every API request runs this: the token and its user in one round trip at the driver
# level, the user then handed to the session as if loaded (no second query, no ORM load).
_TOKEN_USER = Sql("""
SELECT t.id AS token_id, t.last_used_at, u.id, u.email, u.name, u.role, u.password_hash,
  u.active, u.held_out, u.created_at
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = :token_hash AND t.revoked_at IS NULL
""", last_used_at=UTCDateTime(), created_at=UTCDateTime(), active=Boolean(), held_out=Boolean())
_TOUCH_TOKEN = Sql("UPDATE api_tokens SET last_used_at = :now WHERE id = :token_id",
                   stamps=("now",))
_USER_COLUMNS = ("id", "email", "name", "password_hash", "active", "held_out", "created_at")


def user_for_token(*, db: Session, token: str) -> User | None:
    """The active user owning this unrevoked token, or None."""
    row = _TOKEN_USER.first(db, {"token_hash": _token_hash(token)})
    if row is None or not row.active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
        _TOUCH_TOKEN.rowcount(db, {"now": now, "token_id": row.token_id})
        forget(db, ApiToken, row.token_id)
    return _session_user(db, row)


def _session_user(db: Session, row: Any) -> User:
    """The session's User of this row: the one it holds, or one made from the row as if
    the session had loaded it (SQLAlchemy's make_transient_to_detached, then add)."""
    held = db.identity_map.get(identity_key(User, row.id))
    if isinstance(held, User):
        return held
    user = User(role=Role(row.role), **{c: getattr(row, c) for c in _USER_COLUMNS})
    make_transient_to_detached(user)
    db.add(user)
    return user
