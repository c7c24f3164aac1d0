"""The start page: one tile per place this role can go."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.deps import ALL_ROLES, allow
from app.auth.models import User
from app.templating import nav_for, render

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: Annotated[User, Depends(allow(*ALL_ROLES))]) -> Response:
    tiles = [
        {"title": item.label, "path": item.path, "text": item.description, "figure": None}
        for item in nav_for(user)
    ]
    return render(request, "home/index.html", tiles=tiles)
