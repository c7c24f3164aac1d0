"""The home pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import Anyone, AnyUser
from app.templating import nav_for, render

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: AnyUser) -> Response:
    tiles = [
        {"title": item.label, "path": item.path, "text": item.description, "figure": None}
        for item in nav_for(user)
    ]
    return render(request, "home/index.html", tiles=tiles)


@router.get("/favicon.ico", include_in_schema=False)
def favicon(_: Anyone) -> Response:
    """Browsers ask for /favicon.ico on pages without a <link rel="icon"> (JSON, files)."""
    return RedirectResponse("/static/favicon.svg", status_code=301)
