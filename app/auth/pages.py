"""The auth pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.auth import devices, service
from app.auth.deps import Admin, Anyone, AnyUser, login_session, logout_session
from app.auth.models import Role
from app.auth.schemas import (
    UserUpdate,
)
from app.db import DbSession, session_scope
from app.errors import describe, errors, redisplays, validation_errors
from app.fields import Email, Id, Published, Text
from app.templating import flash, render

router = APIRouter()


def _safe_next(target: str) -> str:
    # Only same-site paths: never redirect a login to another host.
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse, responses=errors(303))
def login_page(request: Request, user: Anyone, next: Text = "/") -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "auth/login.html", next=_safe_next(next), email="")


def _login_again(request: Request, form: dict[str, str], message: str) -> Response:
    return render(request, "auth/login.html", error=message,
                  next=_safe_next(form.get("next", "/")), email=form.get("email", ""))


@router.post("/login", response_class=HTMLResponse, responses=errors(303, 401, 429))
@redisplays(_login_again)
def login(
    request: Request, db: DbSession, _: Anyone,
    email: Annotated[Text, Form(min_length=1, max_length=320)],
    password: Annotated[Text, Form(min_length=1, max_length=200)],
    next: Annotated[Text, Form()] = "/",
) -> Response:
    ip = request.client.host if request.client else "unknown"
    try:
        user = service.authenticate(db=db, email=email, password=password, ip=ip,
                                    device_cookie=request.cookies.get(devices.COOKIE))
    except service.Throttled as exc:
        page = render(request, "auth/login.html", status_code=429, error=str(exc),
                      next=_safe_next(next), email=email)
        page.headers["Retry-After"] = str(exc.wait_s)
        return page
    except service.AuthError as exc:
        # The failed attempt is committed with the request: it counts towards throttling.
        return render(request, "auth/login.html", status_code=401, error=str(exc),
                      next=_safe_next(next), email=email)
    login_session(request, db, user)
    response = RedirectResponse(_safe_next(next), status_code=303)
    devices.remember(response, user.email)
    return response


@router.post("/logout", status_code=303, response_class=RedirectResponse)
def logout(request: Request, db: DbSession, _: AnyUser) -> Response:
    logout_session(request, db)
    flash(request, "You are logged out.")
    return RedirectResponse("/login", status_code=303)


@router.post("/account/logout-everywhere")
def logout_everywhere(request: Request, db: DbSession, user: AnyUser) -> Response:
    ended = service.end_sessions(db=db, user=user)
    request.session.clear()
    flash(request, f"You are logged out everywhere ({ended} session{'s' * (ended != 1)} ended).")
    return RedirectResponse("/login", status_code=303)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, db: DbSession, user: AnyUser) -> Response:
    tokens = service.list_tokens(db=db, user=user)
    return render(request, "auth/account.html", tokens=tokens, new_token=None,
                  sessions=service.count_sessions(db=db, user=user))


@router.post("/account/tokens", response_class=HTMLResponse)
def account_create_token(
    request: Request, db: DbSession, user: AnyUser, name: Annotated[Text, Form(max_length=100)] = ""
) -> Response:
    _, clear = service.create_token(db=db, user=user, name=name)
    tokens = service.list_tokens(db=db, user=user)
    return render(request, "auth/account.html", tokens=tokens, new_token=clear,
                  sessions=service.count_sessions(db=db, user=user))


@router.post("/account/tokens/{token_id}/revoke", status_code=303, response_class=RedirectResponse)
def account_revoke_token(request: Request, db: DbSession, user: AnyUser, token_id: Id) -> Response:
    service.revoke_token(db=db, user=user, token_id=token_id)
    flash(request, "Token revoked.")
    return RedirectResponse("/account", status_code=303)


def _users(request: Request, db: Session, form: dict[str, str]) -> Response:
    return render(request, "auth/users.html", users=service.list_users(db=db), roles=list(Role),
                  form=form)


def _users_again(request: Request, form: dict[str, str], message: str) -> Response:
    flash(request, message, "error")
    # Only the add-a-user form is filled in again; a row's form shows the row as stored.
    with session_scope(read_only=True) as db:  # a page shown again only reads
        return _users(request, db, form if request.url.path == "/admin/users" else {})


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, db: DbSession, _: Admin) -> Response:
    return _users(request, db, {})


@router.post("/admin/users", status_code=303, response_class=RedirectResponse,
             responses=errors(400, 409))
@redisplays(_users_again)
def users_create(
    request: Request, db: DbSession, _: Admin,
    email: Annotated[Email, Form(max_length=320)],
    password: Annotated[Text, Form(min_length=service.MIN_PASSWORD, max_length=200)],
    role: Annotated[Role, Form()], name: Annotated[Text, Form(max_length=200)] = "",
    held_out: Annotated[bool, Form()] = False,
) -> Response:
    user = service.create_user(
        db=db, email=email, password=password, role=role, name=name, held_out=held_out
    )
    flash(request, f"Created {user.email} ({user.role.value}).")
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{user_id}", status_code=303, response_class=RedirectResponse,
             responses=errors(400))
@redisplays(_users_again)
def users_update(
    request: Request, db: DbSession, admin: Admin, user_id: Id,
    role: Annotated[Role | None, Form()] = None, active: Annotated[bool | None, Form()] = None,
    held_out: Annotated[bool | None, Form()] = None,
    password: Annotated[Text, Form(max_length=200),  # empty: the password stays
                        Published(rf"^([^\x00]{{{service.MIN_PASSWORD},}})?$")] = "",
) -> Response:
    try:
        change = UserUpdate(role=role, active=active, held_out=held_out,
                            password=password or None)
    except ValidationError as exc:
        raise service.AuthError(describe(validation_errors(exc.errors())), 422) from exc
    service.change_user(db=db, admin=admin, user_id=user_id, change=change)
    flash(request, "User updated.")
    return RedirectResponse("/admin/users", status_code=303)

