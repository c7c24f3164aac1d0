"""create_app(): the ASGI application (`uvicorn app.main:create_app --factory`)."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from app import domain_parts
from app.auth.deps import PUBLIC, Forbidden, NotAuthenticated, allow
from app.config import get_settings
from app.db import database_unavailable, get_engine, pending_migrations
from app.templating import render

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Each domain's routes module exposes `router`; it is included when the module exists
# (app.domain_parts refuses a routes module of an unlisted domain, or one without router).
# Requests are matched against the routers in this order, so the labelers' hot path (the
# queue and the submissions) comes first.
DOMAINS = (
    "queue", "labeling", "auth", "prompts", "agreement", "exports", "jobs", "registry",
    "evaluation", "home",
)


log = logging.getLogger(__name__)
# What a client is told to wait during a database outage: about a PostgreSQL restart.
OUTAGE_RETRY_AFTER_S = 5


class UnmigratedDatabase(RuntimeError):
    """The database schema is behind the code."""


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/healthz"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if _wants_json(request):
            return JSONResponse(
                {"detail": "Not authenticated: log in or send 'Authorization: Bearer <token>'."},
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=403)
        return render(request, "error.html", status_code=403, title="Forbidden", detail=exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_json(request) or exc.status_code < 400:
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        return render(
            request, "error.html", status_code=exc.status_code,
            title=f"Error {exc.status_code}", detail=exc.detail,
        )

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> Response:
        if not database_unavailable(exc):
            raise exc  # a fault of the statement: a 500, logged
        log.warning("database unavailable, answering 503: %s", exc.orig or exc)
        detail = "The database is unavailable for a moment. Try again shortly."
        headers = {"Retry-After": str(OUTAGE_RETRY_AFTER_S)}
        if _wants_json(request):
            return JSONResponse({"detail": detail}, status_code=503, headers=headers)
        request.state.user = None  # the page must not need the database
        page = render(request, "error.html", status_code=503, title="Back in a moment",
                      detail=detail)
        page.headers.update(headers)
        return page

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
            for e in exc.errors()
        ]
        text = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return JSONResponse({"detail": text, "errors": errors}, status_code=422)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    if get_settings().env != "test":  # tests build many apps in one process
        # What is loaded by start-up lives as long as the process. Frozen, the cycle
        # collector no longer walks it: a full collection took over 100 ms, a pause that
        # every request in flight waited out (bench/bench_labeling.py's p99).
        gc.collect()
        gc.freeze()
    yield


def create_app(*, check_migrations: bool = True) -> FastAPI:
    """Build the application; refuses to start on a database behind its migrations."""
    settings = get_settings()
    if check_migrations and pending_migrations(get_engine()):
        raise UnmigratedDatabase(
            "The database is not migrated to the current schema. "
            "Run `rlhf-studio db upgrade` and start again."
        )
    app = FastAPI(title="RLHF Studio", version="0.1.0", lifespan=_lifespan)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie="rlhf_session",
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_error_handlers(app)
    for router in domain_parts("routes", DOMAINS, "router"):
        app.include_router(router)

    @app.get("/healthz", dependencies=[Depends(allow(PUBLIC))])
    def healthz() -> JSONResponse:
        from app.health import check

        report = check()
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    return app


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every path operation of the app, flattening included routers.

    Routers are included without prefixes or extra dependencies, so each route's own path
    and dependencies are the effective ones.
    """
    found: list[APIRoute] = []

    def walk(routes: list) -> None:  # type: ignore[type-arg]
        for route in routes:
            if isinstance(route, APIRoute):
                found.append(route)
            elif hasattr(route, "original_router"):  # FastAPI ≥ 0.160 keeps routers nested
                walk(route.original_router.routes)

    walk(app.routes)
    return found
