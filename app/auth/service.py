"""Accounts: password hashing, users, browser sessions, API tokens and login throttling.
No HTTP here."""

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from app.auth import devices
from app.auth.models import ApiToken, Role, User, UserSession
from app.auth.schemas import UserUpdate
from app.config import get_settings
from app.db import utcnow
from app.errors import DomainError
from app.statements import Sql

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
        raise AuthError(f"A user with email {email} already exists.", 409)
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
        if not active:
            end_sessions(db=db, user=user)
    if held_out is not None:
        user.held_out = held_out
    if name is not None:
        user.name = name
    db.flush()
    return user


def change_user(*, db: Session, admin: User, user_id: int, change: UserUpdate) -> User:
    """An admin's change to a user (the API's and the users page's): role, activity,
    held-out flag, name, password; nobody deactivates or demotes themselves."""
    user = get_user(db=db, user_id=user_id)
    if user is None:
        raise AuthError(f"No user {user_id}.", status=404)
    if user.id == admin.id and (change.active is False or change.role not in (None, Role.admin)):
        raise AuthError("You cannot deactivate or demote yourself.")
    update_user(db=db, user=user, role=change.role, active=change.active,
                held_out=change.held_out, name=change.name)
    if change.password:
        set_password(db=db, user=user, password=change.password,
                     keep_tokens=change.keep_tokens)
    return user


def set_password(*, db: Session, user: User, password: str, keep_tokens: bool = False) -> None:
    """Replace a user's password; this ends every session of the user and, unless
    `keep_tokens`, revokes their API tokens too (a reset usually means the old password,
    and so whatever was created with it, may be in someone else's hands)."""
    _check_password(password)
    user.password_hash = hash_password(password)
    end_sessions(db=db, user=user)
    if not keep_tokens:
        db.execute(update(ApiToken).where(ApiToken.user_id == user.id,
                                          ApiToken.revoked_at.is_(None))
                   .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
        for token in list(db.identity_map.values()):
            if isinstance(token, ApiToken) and token.user_id == user.id:
                db.expire(token)
    db.flush()


class _Counted(NamedTuple):
    failures: int
    window_start: datetime


# One atomic step per key: concurrent failures queue on the row's lock, so each sees the
# count of those before it. A window that has ended starts again at 1.
_COUNT_ATTEMPT = Sql("""
INSERT INTO login_throttle (key, failures, window_start) VALUES (:key, 1, :now)
ON CONFLICT (key) DO UPDATE SET
  failures = CASE WHEN login_throttle.window_start <= :since THEN 1
                  ELSE login_throttle.failures + 1 END,
  window_start = CASE WHEN login_throttle.window_start <= :since THEN :now
                      ELSE login_throttle.window_start END
RETURNING failures, window_start
""", _Counted, stamps=("now", "since"))
# Counts of windows that ended, deleted by each attempt after its own counts: rows another
# attempt holds are skipped, so the cleanup never waits (nor deadlocks) on a login.
_FORGET_EXPIRED = {
    "postgresql": Sql("""
DELETE FROM login_throttle WHERE key IN (
  SELECT key FROM login_throttle WHERE window_start <= :since LIMIT 1000
  FOR UPDATE SKIP LOCKED)""", stamps=("since",)),
    "sqlite": Sql("DELETE FROM login_throttle WHERE window_start <= :since",  # one writer
                  stamps=("since",)),
}
_FORGIVE = Sql("UPDATE login_throttle SET failures = failures - 1 "
               "WHERE key = :key AND failures > 0")
_RESET = Sql("DELETE FROM login_throttle WHERE key = :key")


def _throttle_keys(email: str, ip: str, device: str | None = None) -> dict[str, int]:
    settings = get_settings()
    if device:  # a browser that logged in to this account before (app/auth/devices.py)
        return {f"device:{device}": settings.login_max_failures}
    ip = ip[:64]  # keys fit the column whatever a proxy forwarded
    return {
        f"account:{email}": settings.login_max_failures_account,
        f"account-address:{email} {ip}": settings.login_max_failures,
        f"address:{ip}": settings.login_max_failures_address,
    }


def _count_attempt(*, db: Session, email: str, ip: str, device: str | None) -> int:
    """Count this attempt as a failure under each key, committed before the password is
    checked (so concurrent attempts see it); the seconds to wait if a limit is passed."""
    window = timedelta(seconds=get_settings().login_window_s)
    now = utcnow()
    params = {"now": now, "since": now - window}
    wait = 0
    keys = sorted(_throttle_keys(email, ip, device).items())  # one lock order for all
    for key, limit in keys:
        row = _COUNT_ATTEMPT.one(db, {**params, "key": key})
        if row.failures > limit:
            wait = max(wait, int((row.window_start + window - now).total_seconds()) + 1)
    if wait:  # refused unchecked, so not a guess: counted, it would push the other keys on
        for key, _ in keys:
            _FORGIVE.rowcount(db, {"key": key})
    _FORGET_EXPIRED[db.get_bind().dialect.name].rowcount(db, {"since": params["since"]})
    db.commit()
    return wait


def authenticate(*, db: Session, email: str, password: str, ip: str,
                 device_cookie: str | None = None) -> User:
    """The active user with these credentials; raises Throttled or AuthError.

    Each attempt is first counted as a failure per account, per (account, client address)
    and per address, in a transaction of its own committed before the slow password check:
    N concurrent wrong passwords get exactly the limit's worth of checks. A right password
    then clears the account's counts and takes its attempt back from the address's. A
    browser with a device cookie for the account is counted on its own instead (devices.py).
    """
    email = email.strip().lower()
    device = devices.device_for(device_cookie, email)
    wait = _count_attempt(db=db, email=email, ip=ip, device=device)
    if wait:
        raise Throttled(wait)
    user = get_user_by_email(db=db, email=email)
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
        ok = user is not None and user.active
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        raise AuthError("Wrong email or password.")
    if device:
        _RESET.rowcount(db, {"key": f"device:{device}"})
    else:
        account, pair, address = _throttle_keys(email, ip)
        _RESET.rowcount(db, {"key": account})
        _RESET.rowcount(db, {"key": pair})
        _FORGIVE.rowcount(db, {"key": address})
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _session_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(*, db: Session, user: User) -> str:
    """A new browser session of this user; returns the secret the cookie carries (only its
    hash is stored). The user's sessions past their age are deleted on the way."""
    now = utcnow()
    db.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                         UserSession.expires_at <= now))
    secret = secrets.token_urlsafe(32)
    db.add(UserSession(
        user_id=user.id, token_hash=_session_hash(secret), created_at=now,
        expires_at=now + timedelta(seconds=get_settings().session_max_age_s),
    ))
    db.flush()
    return secret


def end_session(*, db: Session, secret: str) -> None:
    """End the session with this secret (logout); nothing if it already ended."""
    db.execute(delete(UserSession).where(UserSession.token_hash == _session_hash(secret)))


def end_sessions(*, db: Session, user: User) -> int:
    """End every session of this user ("log out everywhere"); how many there were."""
    result = db.execute(delete(UserSession).where(UserSession.user_id == user.id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_sessions(*, db: Session, user: User) -> int:
    """How many live sessions this user has."""
    return int(db.scalar(select(func.count()).select_from(UserSession).where(
        UserSession.user_id == user.id, UserSession.expires_at > utcnow())) or 0)


# Every cookie request runs this: the session and its user in one indexed lookup.
class _SessionUser(NamedTuple):
    id: int
    email: str
    name: str
    role: str
    password_hash: str
    active: bool
    held_out: bool
    created_at: datetime


_SESSION_USER = Sql("""
SELECT u.id, u.email, u.name, u.role, u.password_hash, u.active, u.held_out, u.created_at
FROM user_sessions s JOIN users u ON u.id = s.user_id
WHERE s.token_hash = :token_hash AND s.expires_at > :now
""", _SessionUser, stamps=("now",))


def user_for_session(*, db: Session, secret: str) -> User | None:
    """The active user of this live session, or None (ended, expired or deactivated)."""
    row = _SESSION_USER.first(db, {"token_hash": _session_hash(secret), "now": utcnow()})
    if row is None or not row.active:
        return None
    return _loaded_user(db, row)


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
class _TokenUser(NamedTuple):
    token_id: int
    last_used_at: datetime | None
    id: int
    email: str
    name: str
    role: str
    password_hash: str
    active: bool
    held_out: bool
    created_at: datetime


_TOKEN_USER = Sql("""
SELECT t.id AS token_id, t.last_used_at, u.id, u.email, u.name, u.role, u.password_hash,
  u.active, u.held_out, u.created_at
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = :token_hash AND t.revoked_at IS NULL
""", _TokenUser)
_TOUCH_TOKEN = Sql("UPDATE api_tokens SET last_used_at = :now WHERE id = :token_id",
                   stamps=("now",), changes={"token_id": ApiToken})
_USER_COLUMNS = ("id", "email", "name", "password_hash", "active", "held_out", "created_at")


def user_for_token(*, db: Session, token: str) -> User | None:
    """The active user owning this unrevoked token, or None."""
    row = _TOKEN_USER.first(db, {"token_hash": _token_hash(token)})
    if row is None or not row.active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
        _TOUCH_TOKEN.rowcount(db, {"now": now, "token_id": row.token_id})
    return _loaded_user(db, row)


def _loaded_user(db: Session, row: Any) -> User:
    """The session's User of this row: the one it holds, or one made from the row as if
    the session had loaded it (SQLAlchemy's make_transient_to_detached, then add)."""
    held = db.identity_map.get(identity_key(User, row.id))
    if isinstance(held, User):
        return held
    user = User(role=Role(row.role), **{c: getattr(row, c) for c in _USER_COLUMNS})
    make_transient_to_detached(user)
    db.add(user)
    return user
