"""Pydantic I/O of the accounts API."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.auth.models import Role
from app.fields import Email, Text


class Me(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: Role
    held_out: bool


class TokenCreate(BaseModel):
    name: Text = Field(default="", max_length=100)


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="The clear token; shown once, never stored.")


class UserRead(Me):
    active: bool
    created_at: datetime


class UserCreate(BaseModel):
    email: Email = Field(max_length=320)
    password: Text = Field(min_length=8, max_length=200)
    role: Role
    name: Text = Field(default="", max_length=200)
    held_out: bool = False


class UserUpdate(BaseModel):
    role: Role | None = None
    active: bool | None = None
    held_out: bool | None = None
    name: Text | None = Field(default=None, max_length=200)
    password: Text | None = Field(default=None, min_length=8, max_length=200)
    keep_tokens: bool = Field(
        default=False, description="With a new password: keep the user's API tokens "
        "(by default a password reset revokes them, as it ends every session).")


class SessionsEnded(BaseModel):
    ended: int = Field(description="How many browser sessions were ended.")
