"""Auth's JSON API: tokens and user administration (login, logout, account and users pages
are in pages.py)."""


from fastapi import APIRouter

from app.auth import pages, service
from app.auth.deps import ALL_ROLES, Admin, AnyUser
from app.auth.models import Role, User
from app.auth.schemas import (
    Me,
    SessionsEnded,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from app.db import DbSession
from app.errors import errors
from app.fields import Id
from app.templating import add_nav

router = APIRouter()
add_nav("Account", "/account", ALL_ROLES, "Your API tokens for scripts.")
add_nav("Users", "/admin/users", (Role.admin,), "Create users, change roles, reset passwords.")


@router.get("/api/v1/me", response_model=Me)
def me(user: AnyUser) -> User:
    return user


@router.delete("/api/v1/sessions", response_model=SessionsEnded)
def sessions_end_all(db: DbSession, user: AnyUser) -> SessionsEnded:
    """Log out everywhere: end every browser session of the caller (API tokens stay)."""
    return SessionsEnded(ended=service.end_sessions(db=db, user=user))


@router.get("/api/v1/tokens", response_model=list[TokenRead])
def tokens_list(db: DbSession, user: AnyUser) -> list:
    return service.list_tokens(db=db, user=user)


@router.post("/api/v1/tokens", response_model=TokenCreated, status_code=201)
def tokens_create(db: DbSession, user: AnyUser, body: TokenCreate) -> TokenCreated:
    token, clear = service.create_token(db=db, user=user, name=body.name)
    return TokenCreated(**TokenRead.model_validate(token).model_dump(), token=clear)


@router.delete("/api/v1/tokens/{token_id}", response_model=TokenRead)
def tokens_revoke(db: DbSession, user: AnyUser, token_id: Id) -> object:
    return service.revoke_token(db=db, user=user, token_id=token_id)


@router.get("/api/v1/users", response_model=list[UserRead])
def users_list(db: DbSession, _: Admin) -> list:
    return service.list_users(db=db)


@router.post("/api/v1/users", response_model=UserRead, status_code=201,
             responses=errors(400, 409))
def users_create_api(db: DbSession, _: Admin, body: UserCreate) -> User:
    return service.create_user(db=db, email=body.email, password=body.password,
                               role=body.role, name=body.name, held_out=body.held_out)


@router.patch("/api/v1/users/{user_id}", response_model=UserRead, responses=errors(400))
def users_update_api(db: DbSession, admin: Admin, user_id: Id, body: UserUpdate) -> User:
    return service.change_user(db=db, admin=admin, user_id=user_id, change=body)


router.include_router(pages.router)
