"""Jinja2 templates (autoescaped) and the context every page gets."""

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import inspect as sa_inspect

from app.db import session_scope

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
# Markdown from admins (guidelines); raw HTML in it is escaped, not rendered.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    roles: frozenset[str]
    description: str = ""


# Filled by each domain's routes module through add_nav(); the home page shows them as tiles.
NAV: list[NavItem] = []


def add_nav(label: str, path: str, roles: tuple[str, ...], description: str = "") -> None:
    """Put a link in the top navigation (and a tile on the home page) for these roles."""
    if all(item.path != path for item in NAV):
        NAV.append(NavItem(label, path, frozenset(str(r) for r in roles), description))


# The order a person works in: the loop at a glance (staff), labeling, then data and models,
# then administration.
NAV_ORDER = (
    "/loop",
    "/label", "/label/mine", "/prompts", "/tasks", "/review", "/exports", "/agreement", "/jobs",
    "/models", "/admin/users", "/admin/use-cases", "/label/guidelines", "/account",
)


def _nav_rank(item: NavItem) -> int:
    return NAV_ORDER.index(item.path) if item.path in NAV_ORDER else NAV_ORDER.index("/admin/users")


def nav_for(user: Any) -> list[NavItem]:
    """The navigation this user's role sees, in working order."""
    items = [item for item in NAV if user is not None and user.role.value in item.roles]
    return sorted(items, key=_nav_rank)


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


# Who a session belongs to: set by the auth layer when it loads (app.auth.deps), since the
# core cannot import a domain. Pages rendered outside any route (a 404) need it.
_SESSION_USER: list[Callable[[Request, Any], Any]] = []


def use_session_user(loader: Callable[[Request, Any], Any]) -> None:
    """Set how a page finds the user of a session that no route has identified."""
    _SESSION_USER[:] = [loader]


def flash(request: Request, message: str, kind: str = "info") -> None:
    """Show a message on the next page this session renders."""
    request.session.setdefault("flash", []).append({"kind": kind, "message": message})


def _pop_flashes(request: Request) -> list[dict[str, str]]:
    return request.session.pop("flash", []) if "flash" in request.session else []


def _live_user(request: Request) -> Any:
    """The caller, reloaded if a rolled-back request transaction expired it (error pages).

    A page no route matched (404) ran no `allow(...)`: its user comes from the session, so
    the page keeps the navigation.
    """
    if not hasattr(request.state, "user"):
        with session_scope() as db:
            found = _SESSION_USER[0](request, db) if _SESSION_USER else None
            if found is not None:
                db.expunge(found)
        request.state.user = found
        return found
    user = getattr(request.state, "user", None)
    if user is not None and sa_inspect(user).expired:
        with session_scope(read_only=True) as db:
            user = db.get(type(user), sa_inspect(user).identity[0])
        request.state.user = user
    return user


def _page_url(request: Request, nav_path: str | None) -> str | None:
    """Where a page rendered in answer to a form post lives: the page the form was on.

    base.html puts the browser there (history.replaceState), so a reload shows that page
    instead of posting the form again, and the address bar names a page that exists."""
    if request.method in ("GET", "HEAD"):
        return None
    ref = urlsplit(request.headers.get("referer", ""))
    if ref.netloc and ref.netloc == request.headers.get("host") and ref.path.startswith("/"):
        return ref.path + (f"?{ref.query}" if ref.query else "")
    return nav_path or "/"


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with the user, navigation, CSRF token and flash messages."""
    user = _live_user(request)
    nav = [(item.label, item.path) for item in nav_for(user)]
    # The longest nav path that prefixes this page is the current one (/label vs /label/mine).
    here = request.url.path
    current = max((p for _, p in nav if here == p or here.startswith(p.rstrip("/") + "/")),
                  key=len, default=None)
    context.update(
        user=user,
        nav=nav,
        current_nav=current,
        csrf_token=csrf_token(request),
        flashes=_pop_flashes(request),
        page_url=_page_url(request, current),
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)




@lru_cache(maxsize=64)
def markdown(text: str | None) -> Markup:
    """Admin-written markdown as HTML; raw HTML inside it stays escaped.

    Cached by text: the same guidelines are rendered on every task page.
    """
    return Markup(_markdown.render(text or ""))


templates.env.filters["markdown"] = markdown
