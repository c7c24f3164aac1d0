"""The published OpenAPI spec is true.

schemathesis generates requests from /openapi.json, valid and invalid, for each role (and
anonymous) and checks every answer against the spec: no 5xx, only declared status codes and
content types, bodies that match their schemas (the one ErrorBody for every error), invalid
input refused and valid input taken (but for the RULES the spec cannot state). The
fast run sends a few cases per operation (about 180 requests a role); the slow one
(`-m slow`) six times more (RLHF_CONTRACT_EXAMPLES_LONG=40 for a deeper search: about
6,400 requests and 100 s a role). Every request runs in the test's rolled-back transaction.
"""

import os
from collections import Counter
from typing import NamedTuple

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.core.failures import FailureGroup

from app.auth import service as auth
from app.auth.models import Role
from app.fields import MAX_ID
from tests.factories import make_user


class Rule(NamedTuple):
    statuses: set[int]
    why: str
    fields: frozenset[str] = frozenset()  # objects whose cross-field validator states it


# Schema-valid requests refused by a rule the spec cannot state, by operation: a rule over
# stored rows (only the server knows a task's kind, whether a model is active, whether there
# is enough data) or across fields (`since` before `until`, a kind and the list it needs).
# schemathesis's positive check takes 404/409 as such refusals but not the 400/422 these
# answer, which DESIGN.md fixes for POST /api/v1/rounds ("422/400 with a sentence when
# there is not enough data"). Each entry is the statuses and the rule; on the JSON API the
# refusal must also be the rule's sentence (an ErrorBody without field `errors`, or naming
# only the object a cross-field validator checks), so a field the spec leaves unbounded,
# which FastAPI's validation names, still fails the check.
RULES: dict[str, Rule] = {
    "POST /api/v1/rounds": Rule({400, 422}, "enough labeled data for the stages (DESIGN.md: "
                                "422/400 with a sentence), a broker to send the jobs to"),
    "POST /api/v1/generate": Rule({422}, "a model to sample from: an active policy or SFT"),
    "POST /api/v1/evaluations": Rule({422}, "an active SFT as the default baseline, models "
                                     "with weights, enough test prompts"),
    "POST /api/v1/tasks/{task_id}/submit": Rule({422}, "the task's stored kind decides "
                                                "which fields the body needs"),
    "POST /api/v1/assignments/{assignment_id}/flags": Rule(
        {422}, "the task has a prompt (a write_prompt task has none yet)"),
    "POST /api/v1/tasks/bulk": Rule({400}, "stored use cases for user-based prompts, the "
                                    "prompt's own candidates; by kind, the list it needs"),
    "POST /api/v1/exports": Rule({422}, "since before until; the filters a kind applies",
                                 frozenset({"filters"})),
    "PUT /api/v1/schedule": Rule({422}, "an enabled schedule needs a period or a threshold"),
    "POST /api/v1/prompts/import": Rule({400, 422}, "a file's lines: UTF-8 JSONL or CSV "
                                        "rows; with strict, any bad row refuses the import; "
                                        "rules: train and valid fractions sum to at most 1",
                                        frozenset({"rules"})),
    "POST /api/v1/candidates/import": Rule({400, 422}, "as POST /api/v1/prompts/import",
                                           frozenset({"rules"})),
    # The forms of the pages: the same rules, on fields a person types (free text the page
    # reads and answers, showing the form again with a sentence).
    "POST /tasks/create": Rule({422}, "a kind chosen, at least one id listed"),
    "POST /tasks/write-prompt": Rule({400}, "stored use cases for user-based prompts"),
    "POST /tasks/import-candidates": Rule({400, 422}, "as POST /api/v1/candidates/import"),
    "POST /exports": Rule({422}, "as POST /api/v1/exports"),
    "POST /evaluations": Rule({422}, "as POST /api/v1/evaluations"),
    "POST /jobs/rounds": Rule({400, 422}, "as POST /api/v1/rounds"),
    "POST /jobs/schedule": Rule({422}, "as PUT /api/v1/schedule"),
}


def admitted_or_ruled_out(ctx, response, case):  # type: ignore[no-untyped-def]
    """positive_data_acceptance, but for a refusal RULES names."""
    rule = RULES.get(case.operation.label)
    if rule and response.status_code in rule.statuses and _states(rule, response):
        return None
    return positive_data_acceptance(ctx, response, case)


def _states(rule: Rule, response) -> bool:  # type: ignore[no-untyped-def]
    if response.headers.get("content-type", [""])[0].startswith("text/html"):
        return True  # a page: the form again, with the rule's sentence
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and {e["field"] for e in body.get("errors", [])} <= rule.fields


# Also: input the spec refuses is refused (negative_data_rejection), input it admits is
# taken (positive_data_acceptance, save for RULES above), 405s name what the path allows,
# undeclared methods are 405, a public route ignores credentials.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection, allow_header_conformance,
          unsupported_method, missing_required_header, ignored_auth,
          response_headers_conformance, admitted_or_ruled_out]
FAST_EXAMPLES = int(os.environ.get("RLHF_CONTRACT_EXAMPLES", "2"))
SLOW_EXAMPLES = int(os.environ.get("RLHF_CONTRACT_EXAMPLES_LONG", "12"))
ROLES = [None, *[r.value for r in Role]]


def _headers(db, role: str | None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    if role is None:
        return {}
    _, clear = auth.create_token(db=db, user=make_user(db, role), name="contract")
    return {"Authorization": f"Bearer {clear}"}


def _send(case: schemathesis.Case, headers: dict[str, str], failures: Counter[str]) -> None:
    label = case.operation.label
    try:
        response = case.call(headers=headers)
    except Exception as exc:  # noqa: BLE001 - the app raised: a 500 in production
        failures[f"{label} [Server error: {type(exc).__name__}] 500"] += 1
        return
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            failures[f"{label} [{failure.title}] {response.status_code}"] += 1


def _run(app, db, role: str | None, examples: int) -> tuple[int, Counter[str]]:  # type: ignore[no-untyped-def]
    """`examples` generated cases per operation, valid and invalid; (requests, failures)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    if role is None:
        # A page sends an anonymous caller to the login page (303) before reading its
        # input, as it should: that is a refusal too.
        # (Each schema has a configuration of its own.)
        refusals = schema.config.checks.negative_data_rejection
        refusals.expected_statuses = [*refusals.expected_statuses, "303"]
    headers = _headers(db, role)
    failures: Counter[str] = Counter()
    sent = 0
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            @given(case=result.ok().as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                nonlocal sent
                sent += 1
                _send(case, headers, failures)

            try:
                check()
            except Unsatisfiable:  # no invalid input exists for this operation
                pass
    return sent, failures


def _verdict(role: str | None, sent: int, failures: Counter[str]) -> str:
    servers = sum(n for what, n in failures.items() if what.endswith(" 500"))
    head = (f"{role or 'anonymous'}: {sent} requests, {sum(failures.values())} failures, "
            f"{servers} 5xx")
    lines = [f"{n:5d} {what}" for what, n in failures.most_common()]
    if os.environ.get("RLHF_CONTRACT_REPORT"):  # figures for a report
        with open(os.environ["RLHF_CONTRACT_REPORT"], "a") as out:
            out.write("\n".join([head, *lines]) + "\n")
    return "\n".join([head, *lines])


@pytest.mark.parametrize("role", ROLES, ids=[r or "anonymous" for r in ROLES])
def test_api_answers_as_its_spec_says(app, client, db, role):
    sent, failures = _run(app, db, role, FAST_EXAMPLES)
    verdict = _verdict(role, sent, failures)
    assert sent > 0 and not failures, verdict


@pytest.mark.slow
@pytest.mark.postgres_only  # what the long search hunts is mostly what PostgreSQL refuses
@pytest.mark.parametrize("role", ROLES[1:])  # anonymous: 401 on all but a few, as fast
def test_api_answers_as_its_spec_says_long(app, client, db, role):
    sent, failures = _run(app, db, role, SLOW_EXAMPLES)
    verdict = _verdict(role, sent, failures)
    assert sent > 0 and not failures, verdict


def _integers(schema: dict, spec: dict, path: str = "") -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """Every integer schema under `schema` that is an id (its name ends in _id or _ids)."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    found = []
    if schema.get("type") == "integer" and path.endswith(("_id", "_ids[]")):
        found.append((path, schema))
    for name, sub in schema.get("properties", {}).items():
        found += _integers(sub, spec, f"{path}.{name}" if path else name)
    for sub in schema.get("anyOf", []):
        found += _integers(sub, spec, path)
    if "items" in schema:
        found += _integers(schema["items"], spec, path + "[]")
    return found


def test_spec_declares_errors_and_bounds_ids(client):
    """Any route, old or new: errors in ErrorBody, ids bounded to the database's integer."""
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    unbounded, undeclared = [], []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            if not path.startswith("/api/"):
                continue
            for status, answer in op["responses"].items():
                if status >= "400":
                    ref = answer.get("content", {}).get("application/json", {}).get("schema")
                    if ref != {"$ref": "#/components/schemas/ErrorBody"}:
                        undeclared.append(f"{where} {status}")
            if "{" in path and "404" not in op["responses"]:
                undeclared.append(f"{where} 404")
            params = [(p["name"], p["schema"]) for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ints = [hit for name, s in params for hit in _integers(s, spec, name)]
            ints += _integers(body.get("schema", {}), spec)
            unbounded += [f"{where} {name}" for name, s in ints if s.get("minimum") not in (0, 1)
                          or s.get("maximum", MAX_ID + 1) > MAX_ID]
    assert undeclared == [] and unbounded == []
