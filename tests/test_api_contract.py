"""The published OpenAPI spec is true: schemathesis generates requests from /openapi.json for
each role (and anonymous) and checks every answer against the spec: no 5xx, only declared
status codes and content types, bodies that match their schemas.

The fast run generates a few cases per operation (a few hundred requests in all); the slow
one (`-m slow`) many more. Every request runs in the test's rolled-back transaction.
"""

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from app.auth import service as auth
from app.auth.models import Role
from tests.factories import make_user

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
FAST_EXAMPLES = int(os.environ.get("RLHF_CONTRACT_EXAMPLES", "2"))
SLOW_EXAMPLES = 40


def _headers(db, role: str | None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    if role is None:
        return {}
    _, clear = auth.create_token(db=db, user=make_user(db, role), name="contract")
    return {"Authorization": f"Bearer {clear}"}


def _run(app, db, role: str | None, examples: int) -> tuple[int, Counter[str]]:  # type: ignore[no-untyped-def]
    """Send `examples` generated cases per operation and mode; the requests made and the
    failures by operation and check."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = _headers(db, role)
    failures: Counter[str] = Counter()
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            @given(case=strategy)
            def check(case: schemathesis.Case) -> None:
                nonlocal sent
                sent += 1
                try:
                    response = case.call(headers=headers)
                except Exception as exc:  # noqa: BLE001 - the app raised: a 500 in production
                    failures[f"{operation.label} [Server error: {type(exc).__name__}] 500"] += 1
                    return
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as group:
                    for failure in group.exceptions:
                        failures[f"{operation.label} [{failure.title}] "
                                 f"{response.status_code}"] += 1
                except AssertionError as exc:
                    failures[f"{operation.label} [{type(exc).__name__}: {exc}]"[:300]] += 1

            try:
                check()
            except Unsatisfiable:  # e.g. no invalid value exists for this operation's input
                pass
    return sent, failures


ROLES = [None, *[r.value for r in Role]]


def _verdict(role: str | None, sent: int, failures: Counter[str]) -> str:
    servers = sum(n for what, n in failures.items() if what.endswith(" 500"))
    head = (f"{role or 'anonymous'}: {sent} requests, {sum(failures.values())} failures, "
            f"{servers} 5xx")
    if os.environ.get("RLHF_CONTRACT_REPORT"):  # figures for a report
        with open(os.environ["RLHF_CONTRACT_REPORT"], "a") as out:
            out.write(head + "\n")
            out.writelines(f"  {n:4d} {what}\n" for what, n in failures.most_common())
    return head + "\n" + "\n".join(f"{n:4d} {what}" for what, n in failures.most_common())


@pytest.mark.parametrize("role", ROLES, ids=[r or "anonymous" for r in ROLES])
def test_api_matches_its_spec(app, client, db, role):
    sent, failures = _run(app, db, role, FAST_EXAMPLES)
    verdict = _verdict(role, sent, failures)
    assert sent > 0 and not failures, verdict


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES, ids=[r or "anonymous" for r in ROLES])
def test_api_matches_its_spec_long(app, client, db, role):
    sent, failures = _run(app, db, role, SLOW_EXAMPLES)
    verdict = _verdict(role, sent, failures)
    assert sent > 0 and not failures, verdict
