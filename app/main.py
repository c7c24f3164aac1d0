"""create_app(): the ASGI application (`uvicorn app.main:create_app --factory`)."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.middleware.sessions import SessionMiddleware

from app import domain_parts, errors, store
from app.auth.deps import PUBLIC, Allow, allow
from app.config import get_settings
from app.db import database_unavailable, get_engine, pending_migrations
from app.wiring import wire

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Each domain's routes module exposes `router`; it is included when the module exists
# (app.domain_parts refuses a routes module of an unlisted domain, or one without router).
# Requests are matched against the routers in this order, so the labelers' hot path (the
# queue and the submissions) comes first.
DOMAINS = (
    "queue", "labeling", "auth", "prompts", "agreement", "exports", "rounds", "registry",
    "evaluation", "loop", "home",
)


log = logging.getLogger(__name__)
# What a client is told to wait during a database outage: about a PostgreSQL restart.
OUTAGE_RETRY_AFTER_S = 5


class UnmigratedDatabase(RuntimeError):
    """The database schema is behind the code."""


def _install_outage_handler(app: FastAPI) -> None:
    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> Response:
        if not database_unavailable(exc):
            raise exc  # a fault of the statement: a 500, logged
        log.warning("database unavailable, answering 503: %s", exc.orig or exc)
        if not errors.wants_json(request):
            request.state.user = None  # the page must not need the database
        return await errors.error_response(
            request, 503, "The database is unavailable for a moment. Try again shortly.",
            headers={"Retry-After": str(OUTAGE_RETRY_AFTER_S)})


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
    wire()
    shared = store.current(settings)
    if shared is not None:
        shared.check()  # a store that cannot be reached or refuses us: no start, and why
    if check_migrations and pending_migrations(get_engine()):
        raise UnmigratedDatabase(
            "The database is not migrated to the current schema. "
            "Run `rlhf-studio db upgrade` and start again."
        )
    # Starlette's body limit counts the bytes as they arrive (and refuses an over-long
    # Content-Length before reading any): no route, dependency or parser sees a body past
    # its maximum, so a 300 MB POST no longer grows the process by 300 MB before its 413.
    # Upload routes raise theirs with `max_body_size=uploads.max_body_bytes()`.
    app = FastAPI(title="RLHF Studio", version="0.1.0", lifespan=_lifespan,
                  max_body_size=settings.body_max_kb * 1024)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie="rlhf_session",
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    errors.install_handlers(app, routes=lambda: api_routes(app))
    _install_outage_handler(app)
    for router in domain_parts("routes", DOMAINS, "router"):
        app.include_router(router)

    @app.get("/healthz", dependencies=[Depends(allow(PUBLIC))],
             responses={503: {"description": "Something the app needs is down (the report)",
                              "content": {"application/json": {}}}})
    def healthz() -> JSONResponse:
        from app.health import check

        report = check()
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    errors.publish_errors(app, routes=lambda: api_routes(app), roles_of=route_roles)
    return app


def route_roles(route: APIRoute) -> frozenset[str]:
    """The roles the route's `allow(...)` admits (empty when it declares none)."""
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Allow):
            return dep.call.roles
        stack.extend(dep.dependencies)
    return frozenset()


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
