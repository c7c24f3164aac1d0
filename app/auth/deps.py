"""Who is calling and may they: every route depends on exactly one `allow(...)`.

`allow(*roles)` authenticates by bearer token or session cookie, checks the role, and
for unsafe methods on a cookie session checks the CSRF token (form field `csrf_token`
or header `X-CSRF-Token`), so no form or cookie-authenticated API call can skip it.
"""

import secrets
from collections.abc import Iterable
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth import service
from app.auth.models import Role, User
from app.db import DbSession, utcnow
from app.errors import DomainError
from app.templating import csrf_token, use_session_user

PUBLIC = "public"
ALL_ROLES: tuple[Role, ...] = (Role.labeler, Role.researcher, Role.admin)
STAFF: tuple[Role, ...] = (Role.researcher, Role.admin)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotAuthenticated(DomainError):
    """No valid session or token: 401 for the API, a redirect to the login page otherwise."""

    status = 401

    def __init__(self, message: str = "Not authenticated: log in or send "
                 "'Authorization: Bearer <token>'.") -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(DomainError):
    """Authenticated, but this role may not do this (or the CSRF token is wrong)."""

    status = 403

    def __init__(self, detail: str = "You do not have access to this page.") -> None:
        super().__init__(detail)
        self.detail = detail


async def _sent_csrf(request: Request) -> str | None:
    """The CSRF token the client sent with an unsafe request, if any."""
    if request.method in SAFE_METHODS:
        return None
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        request.state.form = form  # what an error page shows again (app/errors.py)
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def login_session(request: Request, db: Session, user: User) -> None:
    """Start a fresh server-side session for this user (new CSRF token, no fixation); a
    session the browser held before ends."""
    previous = request.session.get("sid")
    if isinstance(previous, str):
        service.end_session(db=db, secret=previous)
    request.session.clear()
    request.session["sid"] = service.start_session(db=db, user=user)
    request.session["since"] = utcnow().isoformat()  # "done this session" counts from here
    csrf_token(request)


def logout_session(request: Request, db: Session) -> None:
    """End this browser's session on the server and forget the cookie's contents."""
    secret = request.session.get("sid")
    if isinstance(secret, str):
        service.end_session(db=db, secret=secret)
    request.session.clear()


def _session_user(request: Request, db: Session) -> User | None:
    secret = request.session.get("sid")
    if not isinstance(secret, str):
        return None
    user = service.user_for_session(db=db, secret=secret)
    if user is None:  # ended (logout, password reset, deactivation) or expired
        request.session.clear()
    return user


use_session_user(_session_user)  # error pages that no route reached find their user here


class Allow:
    """A dependency that admits the given roles (or everyone, for PUBLIC)."""

    def __init__(self, roles: Iterable[str]) -> None:
        self.roles = frozenset(str(r) for r in roles)

    def __repr__(self) -> str:
        return f"Allow({sorted(self.roles)})"

    def __call__(
        self,
        request: Request,
        db: DbSession,
        sent_csrf: str | None = Depends(_sent_csrf),
    ) -> Any:
        try:
            user, via_token = self._identify(request, db)
        except NotAuthenticated:
            if PUBLIC not in self.roles:
                raise
            # A public route answers anyone: stale or wrong credentials make the caller
            # anonymous there (/healthz answered a monitor's expired token 401).
            user, via_token = None, False
        request.state.user = user
        if user is None and PUBLIC not in self.roles:
            raise NotAuthenticated()
        if user is not None and PUBLIC not in self.roles and user.role.value not in self.roles:
            raise Forbidden()
        if request.method not in SAFE_METHODS and not via_token:
            expected = request.session.get("csrf")
            if not expected or not sent_csrf or not secrets.compare_digest(expected, sent_csrf):
                raise Forbidden("The form has expired or the CSRF token is missing. "
                                "Reload the page and try again.")
        return user

    @staticmethod
    def _identify(request: Request, db: Session) -> tuple[User | None, bool]:
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise NotAuthenticated()
            user = service.user_for_token(db=db, token=token.strip())
            if user is None:
                raise NotAuthenticated()
            return user, True
        return _session_user(request, db), False


@lru_cache
def allow(*roles: str) -> Allow:
    """The dependency admitting these roles; `allow(PUBLIC)` admits anyone."""
    if not roles:
        raise ValueError("a route must name the roles it allows")
    return Allow(roles)


# The role declarations routes use as parameter types: `user: Staff` admits researchers and
# admins, and hands the route the caller.
Anyone = Annotated[User | None, Depends(allow(PUBLIC))]
AnyUser = Annotated[User, Depends(allow(*ALL_ROLES))]
Staff = Annotated[User, Depends(allow(*STAFF))]
Admin = Annotated[User, Depends(allow(Role.admin))]
