"""One error model: every refusal is a `DomainError` with a status and a sentence.

A domain's error class subclasses `DomainError` (setting its default `status`); services
raise it with a message a person can act on. The app answers it once (install_handlers):

- JSON routes (`/api/...`) get `ErrorBody`: `{"detail": "<sentence>", "errors": [...]}`,
  the one shape the OpenAPI spec declares for every 4xx/5xx; invalid input (FastAPI's
  validation) gets the same body, `detail` in words and one `errors` item per field.
- Pages get the error page, or, for a form route decorated `@redisplays(page)`, that page
  again with the form filled in and the message as a sentence.

In a new domain:

    class JobError(DomainError):
        status = 409                              # the usual status of this domain's refusals

    raise JobError("A round is already running: wait for it to finish.")
    raise JobError(f"No job {job_id}.", status=404)

    @router.post("/api/v1/jobs", response_model=JobRead, responses=errors(404, 409))

401/403/422/503 (and 404 where the path has an id) are declared on every route by
`publish_errors`; declare the others a route can answer with `errors(...)`. Validated types
for ids, pagination, dates and text are in app/fields.py.
"""

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.fields import STORABLE_JSON, storable_json_schema


class DomainError(Exception):
    """A refusal the caller can act on: `status` is its HTTP status, str(exc) the sentence."""

    status: int = 400

    def __init__(self, message: str, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.extra = extra  # more fields for the JSON body (a strict import's report)
        self.headers: dict[str, str] = {}


RETRY_AFTER_S = 5  # what a 503 that names no wait of its own tells the client to wait


class Unavailable(DomainError):
    """Something the request needs is down for now (the database, the broker): 503."""

    status = 503

    def __init__(self, message: str = "The service is briefly unavailable; try again in a "
                 "few seconds.", retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class FieldError(BaseModel):
    field: str = Field(description="Where: a dotted path such as `filters.labeler_ids.0`, "
                       "or '' for the request as a whole.")
    message: str


class ErrorBody(BaseModel):
    """Every error answer of the JSON API."""

    model_config = ConfigDict(extra="allow")

    detail: str = Field(description="What went wrong and what to do, in words.")
    errors: list[FieldError] = Field(default_factory=list,
                                     description="One item per invalid field (422).")


STATUS_TEXT = {
    303: "Not logged in (pages): a redirect to the login page",
    400: "The request cannot be carried out as sent",
    401: "Not authenticated: log in or send a bearer token",
    403: "This role may not do this, or the CSRF token is missing",
    404: "Not found (or not yours)",
    409: "Conflicts with the current state",
    413: "The body (or the upload) is larger than this route accepts",
    422: "Invalid input: which fields and why",
    429: "Too many attempts: retry after Retry-After seconds",
    500: "The server could not carry it out: the answer says why",
    503: "Temporarily unavailable: retry after Retry-After seconds",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that may also answer these statuses (beyond the usual)."""
    return {status: {"description": STATUS_TEXT.get(status, "Error")} for status in statuses}


def upload_body(json_body: type[BaseModel] | None = None, rows: str = "") -> dict[str, Any]:
    """`openapi_extra=` for an upload route, which reads its body itself: a multipart `file`
    (the form's options beside it as text fields) or, given `json_body`, that JSON object or
    the bare list of its `rows`."""
    content: dict[str, Any] = {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}}}}}
    if json_body is not None:
        schema = json_body.model_json_schema(ref_template="#/components/schemas/{model}")
        content["application/json"] = {"schema": {"anyOf": [schema, schema["properties"][rows]]}}
    return {"requestBody": {"required": True, "content": content}}


# ---------------------------------------------------------------------------- messages


def _field(loc: tuple[Any, ...]) -> str:
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "form", "header",
                                                "cookie") else list(loc)
    return ".".join(str(p) for p in parts)


def _index(part: str) -> bool:
    return part.isascii() and part.isdigit()


def _sentence(field: str, message: str) -> str:
    """'labeler_ids.0', 'Input should be a valid integer' → 'Labeler ids (item 1) should be
    a valid integer.'"""
    # A list index is ASCII digits; a key of a client's dict may be any text ('³' is a
    # digit to str.isdigit, not to int).
    names = [p for p in field.split(".") if p and not _index(p)]
    items = [str(int(p) + 1) for p in field.split(".") if _index(p)]
    label = names[-1].replace("_", " ") if names else ""
    if items:
        label += f" (item {', '.join(items)})" if label else f"Item {', '.join(items)}"
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if message.startswith("Input should"):
        message = message.removeprefix("Input ")
    elif message.startswith(("String should", "List should", "Value should")):
        message = message.split(" ", 1)[1]
    elif message == "Field required":
        message = "is required"
    elif label:
        label += ":"
    text = f"{label} {message}".strip() if label else message
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def _message(error: dict[str, Any]) -> str:
    ctx, kind = error.get("ctx") or {}, error.get("type")
    if kind in ("too_long", "too_short") and isinstance(error.get("input"), str):
        # A limit on a validated text type reads "Value should have at most 3 items ...".
        bound = "at most" if kind == "too_long" else "at least"
        limit = ctx.get("max_length" if kind == "too_long" else "min_length")
        return f"String should have {bound} {limit} characters"
    return str(error.get("msg", ""))


def validation_errors(raw: list[Any]) -> list[FieldError]:
    """Pydantic/FastAPI error dicts as FieldErrors."""
    return [FieldError(field=_field(tuple(e.get("loc", ()))), message=_message(e)) for e in raw]


def describe(found: list[FieldError]) -> str:
    """Field errors as sentences a person can act on."""
    if not found:
        return "The request is invalid."
    return " ".join(_sentence(e.field, e.message) for e in found)


# ---------------------------------------------------------------------------- pages

FormPage = Callable[[Request, dict[str, str], str], Response | Awaitable[Response]]
_FORM_PAGES: dict[Callable[..., Any], FormPage] = {}


def redisplays(page: FormPage) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a form route: on a refusal, `page(request, form_values, message)` is shown (with
    a 4xx status) instead of the error page, so the person keeps what they typed."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        _FORM_PAGES[endpoint] = page
        return endpoint

    return mark


def form_values(request: Request, exc: Exception | None = None) -> dict[str, str]:
    """The text fields the form sent (never passwords or the CSRF token)."""
    form = getattr(exc, "body", None)
    if form is None:
        form = getattr(request.state, "form", None)
    if form is None or not hasattr(form, "multi_items"):
        return {}
    return {k: v for k, v in form.multi_items()
            if isinstance(v, str) and k not in ("csrf_token", "password")}


def wants_json(request: Request) -> bool:
    """JSON answers for the API (and /healthz); HTML for the pages."""
    return request.url.path.startswith("/api/") or request.url.path == "/healthz"


async def _page(request: Request, status: int, message: str, exc: Exception | None) -> Response:
    from app.templating import render  # the templates need the auth layer: import late

    page = _FORM_PAGES.get(request.scope.get("endpoint"))  # type: ignore[arg-type]
    if page is not None and request.method == "POST" and status not in (401, 403):
        response = page(request, form_values(request, exc), message)
        if inspect.isawaitable(response):
            response = await response
        response.status_code = status
        return response
    title = {404: "Not found", 403: "Forbidden", 409: "Conflict",
             503: "Back in a moment"}.get(status, "Error")
    return render(request, "error.html", status_code=status, title=title, detail=message)


async def error_response(request: Request, status: int, message: str, *,
                         found: list[FieldError] | None = None,
                         extra: dict[str, Any] | None = None,
                         headers: dict[str, str] | None = None,
                         exc: Exception | None = None) -> Response:
    """The answer to a refusal: ErrorBody for the API, a page otherwise."""
    if wants_json(request):
        body = ErrorBody(detail=message, errors=found or [], **(extra or {}))
        return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)
    response = await _page(request, status, message, exc)
    response.headers.update(headers or {})
    return response


def allowed_methods(request: Request, routes: list[APIRoute]) -> list[str]:
    """The methods this path answers, as the spec lists them for it. Starlette's 405 names
    only the first route that matched the path, and GET /login and POST /login are two."""
    by_template: dict[str, set[str]] = {}
    for route in routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            by_template.setdefault(route.path_format, set()).update(route.methods or ())
    if not by_template:
        return []
    # /api/v1/models/rollback also matches /api/v1/models/{model_id}: the most specific
    # template (fewest parameters) is the path the spec describes.
    best = min(by_template, key=lambda template: template.count("{"))
    return sorted(by_template[best])


def install_handlers(app: FastAPI,
                     routes: Callable[[], list[APIRoute]] = lambda: []) -> None:
    """Answer every refusal in one place (JSON for the API, pages for the browser).
    `routes`: the app's path operations, for a 405's `Allow` header."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if exc.status == 401 and not wants_json(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        headers = dict(exc.headers)
        if exc.status == 503:  # every "down for now" says when to try again
            headers.setdefault("Retry-After", str(RETRY_AFTER_S))
        return await error_response(request, exc.status, str(exc), extra=exc.extra,
                                    headers=headers or None, exc=exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        found = validation_errors(list(exc.errors()))
        return await error_response(request, 422, describe(found), found=found, exc=exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's own (404 no such route, 405 method not allowed, a body too large).
        if exc.status_code < 400:
            return Response(status_code=exc.status_code, headers=exc.headers)
        message = exc.detail if isinstance(exc.detail, str) else "The request was refused."
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (methods := allowed_methods(request, routes())):
            headers["Allow"] = ", ".join(methods)
        limit = request.scope.get("starlette.max_body_size")
        if exc.status_code == 413 and isinstance(limit, int):  # Starlette's body limit
            message = (f"The request body is larger than {limit / 2**20:.3g} MB, the most "
                       f"{request.url.path} accepts.")
        return await error_response(request, exc.status_code, message, headers=headers)


# ---------------------------------------------------------------------------- the spec

_ID_PARAM = "_id}"
EVERY_ROLE = frozenset({"labeler", "researcher", "admin"})


def _json_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _usual_errors(route: APIRoute, method: str, roles: frozenset[str]) -> set[int]:
    found = {422, 503}
    if "public" not in roles:
        found.add(401)
    admits_everyone = "public" in roles or EVERY_ROLE <= roles
    if method not in ("GET", "HEAD", "OPTIONS") or not admits_everyone:
        found.add(403)  # a role not admitted, or a cookie session without its CSRF token
    if _ID_PARAM in route.path_format:  # path_format: "{task_id}" also for "{task_id:int}"
        found.add(404)
    if route.body_field is not None:
        found.add(400)  # a body that cannot be parsed at all
        found.add(413)  # one over the route's maximum (RLHF_BODY_MAX_KB unless it says)
    return found


def _spec_operation(op: dict[str, Any], route: APIRoute, method: str,
                    roles: frozenset[str]) -> None:
    page = not (route.path.startswith("/api/") or route.path == "/healthz")
    responses = op.setdefault("responses", {})
    wanted = _usual_errors(route, method, roles) | {int(s) for s in responses if s.isdigit()
                                                     and int(s) >= 400}
    for status in sorted(wanted):
        old = responses.get(str(status), {})
        if old.get("content") and status != 422:
            continue  # the route declared its own body (e.g. /healthz's report)
        description = old.get("description") or STATUS_TEXT.get(status, "Error")
        if status == 422 and description == "Validation Error":
            description = STATUS_TEXT[422]
        responses[str(status)] = (_html if page else _json_error)(description)
    if page:
        if "public" not in roles:
            responses.setdefault("303", {"description": STATUS_TEXT[303]})
        for status, answer in responses.items():
            if status.startswith("2") and answer.get("content"):
                answer["content"] = {
                    kind: value for kind, value in answer["content"].items()
                    if kind != "application/json"
                } or {"text/html": {"schema": {"type": "string"}}}


def _form_fields_without_null(spec: dict[str, Any]) -> None:
    """A form field is sent or left out; it cannot be JSON's null (urlencoded, `null` reads
    as the text "null"), so an optional form field's schema drops the null FastAPI gives it."""
    schemas = spec.get("components", {}).get("schemas", {})
    for ops in spec["paths"].values():
        for op in ops.values():
            for kind, body in op.get("requestBody", {}).get("content", {}).items():
                if kind == "application/json":
                    continue
                form = schemas.get(body.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1])
                for field in (form or {}).get("properties", {}).values():
                    if {"type": "null"} in field.get("anyOf", []):
                        field["anyOf"].remove({"type": "null"})


def _keys_as_property_names(node: Any) -> None:
    """Pydantic publishes dict[Text, V] as patternProperties {Text's pattern: V}, which still
    lets any other key through (as additionalProperties); the rule is on every key."""
    if isinstance(node, dict):
        pattern = node.get("patternProperties")
        if (isinstance(pattern, dict) and len(pattern) == 1 and "properties" not in node
                and "additionalProperties" not in node):
            (key, value), = node.pop("patternProperties").items()
            node["propertyNames"], node["additionalProperties"] = {"pattern": key}, value
        for value in node.values():
            _keys_as_property_names(value)
    elif isinstance(node, list):
        for value in node:
            _keys_as_property_names(value)


def _hoist_defs(schema: Any, schemas: dict[str, Any]) -> None:
    """Models a route's `openapi_extra` body names (its `$defs`) into the components."""
    if isinstance(schema, dict):
        schemas.update(schema.pop("$defs", {}))
        for value in schema.values():
            _hoist_defs(value, schemas)
    elif isinstance(schema, list):
        for value in schema:
            _hoist_defs(value, schemas)


def publish_errors(app: FastAPI, *, routes: Callable[[], list[APIRoute]],
                   roles_of: Callable[[APIRoute], frozenset[str]]) -> None:
    """Make the published spec say what errors each operation answers, in ErrorBody."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, routes=app.routes,
                           description=app.description)
        for route in routes():
            for method in (route.methods or set()) - {"HEAD"}:
                op = spec["paths"].get(route.path_format, {}).get(method.lower())
                if op is not None:
                    _spec_operation(op, route, method, roles_of(route))
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas["ErrorBody"] = body
        schemas[STORABLE_JSON] = storable_json_schema()
        _form_fields_without_null(spec)
        _keys_as_property_names(spec)
        for ops in spec["paths"].values():
            for op in ops.values():
                _hoist_defs(op.get("requestBody"), schemas)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
