"""Every value a route reads from a request is of a type the database can store.

app/fields.py's types turn bad input into a 422 before it reaches the database: Text refuses
NUL characters and lone surrogates, Id and the other integer types stay below 2³¹. A route
that takes a bare `str` or an unbounded `int` (in its path, query, form or JSON body, or in
a model its body holds) lets such input through to a 500: this walks every route of every
domain, old or new, and names those that do.
"""

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, BeforeValidator

from app import domain_parts, fields
from app.main import DOMAINS


def _routes(routes: list[Any]) -> list[APIRoute]:
    """The routes of a router, those of the routers it includes too."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):  # an included router
            found += _routes(route.original_router.routes)
    return found


def _is_text(metadata: list[Any]) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is fields._text for m in metadata)


def _is_json(metadata: list[Any]) -> bool:
    return any(isinstance(m, AfterValidator) and m.func is fields._json for m in metadata)


def _bounded(metadata: list[Any], name: str) -> bool:
    """Both bounds, within the database's `integer` (`bigint` for a clock's milliseconds)."""
    lows = [m.ge for m in metadata if isinstance(m, at.Ge)]
    lows += [m.gt + 1 for m in metadata if isinstance(m, at.Gt)]
    highs = [m.le for m in metadata if isinstance(m, at.Le)]
    highs += [m.lt - 1 for m in metadata if isinstance(m, at.Lt)]
    top = 2**53 if name.endswith("_ms") else fields.MAX_ID
    return bool(lows and highs) and min(lows) >= -fields.MAX_ID - 1 and max(highs) <= top


def _unsafe(annotation: Any, metadata: list[Any], name: str,
            seen: tuple[type, ...] = ()) -> list[str]:
    """Where in `annotation` a bare str, an unbounded int or unchecked JSON (Any) is."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *more = get_args(annotation)
        return _unsafe(base, [*metadata, *more], name, seen)
    if _is_json(metadata) or origin is Literal or annotation is bool:
        return []
    if annotation is Any:
        return ["Any"]
    if annotation is str:
        return [] if _is_text(metadata) else ["str"]
    if annotation is int:
        return [] if _bounded(metadata, name) else ["int"]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return []
        return [f"{key}: {what}" for key, field in annotation.model_fields.items()
                for what in _unsafe(field.annotation, field.metadata, key, (*seen, annotation))]
    if origin in (Union, UnionType):  # Optional: a field's bounds hold for its value
        return [what for arg in get_args(annotation) if arg is not type(None)
                for what in _unsafe(arg, metadata, name, seen)]
    # lists, dicts: their parts (a dict's keys too), each with bounds of its own
    return [what for arg in get_args(annotation) for what in _unsafe(arg, [], name, seen)]


def _params(dependant: Dependant) -> list[tuple[str, Any, list[Any]]]:
    found = [(f.name, f.field_info.annotation, f.field_info.metadata)
             for f in (*dependant.path_params, *dependant.query_params,
                       *dependant.header_params, *dependant.body_params)]
    for sub in dependant.dependencies:
        found += _params(sub)
    return found


def test_routes_are_found():
    routes = _routes([r for router in domain_parts("routes", DOMAINS, "router")
                      for r in router.routes])
    paths = {r.path_format for r in routes}  # "{task_id}" also for "{task_id:int}"
    # the included pages' routers too
    assert {"/api/v1/jobs", "/tasks/{task_id}", "/review/{what}/{row_id}"} <= paths


def test_no_route_takes_a_bare_str_or_an_unbounded_int():
    unsafe = []
    for router in domain_parts("routes", DOMAINS, "router"):
        for route in _routes(router.routes):
            for name, annotation, metadata in _params(route.dependant):
                unsafe += [f"{sorted(route.methods)[0]} {route.path} {name}: {what}"
                           for what in _unsafe(annotation, metadata, name)]
    assert unsafe == [], ("Use app.fields' Text, Id, PageSize, JsonValue… (or a Literal) "
                          "for these:\n" + "\n".join(unsafe))
