"""Property-based run of the whole API against its OpenAPI document (schemathesis).

Every operation in the document that /api/v1/openapi.json serves is called in-process through
Django's WSGI handler with an admin token and generated inputs; every response must be a
non-5xx that conforms to the document (status code, content type, headers, body schema).

The document is built at import time from the same NinjaAPI that serves it (collection runs
before a database exists, and schemathesis's fixture-based loader does not run on pytest 9);
`test_the_document_tested_is_the_one_served` proves the two are the same.
"""

from __future__ import annotations

from datetime import date

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from billing.models import Invoice
from config.api import api
from tests.api.conftest import log_request

MAX_EXAMPLES = 20
# What "no 5xx and as documented" means. Left out on purpose: positive_data_acceptance (a
# schema-valid request may still be refused with 400/404/409 for what is stored, e.g. an
# unknown provider id or a cursor the API never issued).
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]
DOCUMENT = api.get_openapi_schema()

schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.app = get_wsgi_application()


@pytest.fixture(autouse=True)
def keep_the_test_transaction_open():
    """Django's WSGI handler closes the database connection after each request; the test
    client (and this fixture) keep it open so the test's transaction survives."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(alice, bob, charlie, route, price, research):
    """Something behind most ids the generator is likely to try first."""
    log_request(alice, started_at=price.effective_from)
    Invoice.objects.create(cost_center=research, period_start=date(2026, 1, 1))


@pytest.fixture
def admin_headers(tokens) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.admin}"}


def test_the_document_tested_is_the_one_served(admin_api):
    served = admin_api.get("/api/v1/openapi.json")

    assert served.status_code == 200
    assert served.json() == DOCUMENT


@pytest.mark.timeout(120)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_without_5xx_and_as_documented(case, world, admin_headers):
    case.call_and_validate(headers=admin_headers, checks=CHECKS)
