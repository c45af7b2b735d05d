"""Property-based fuzzing of every operation in the served OpenAPI document (schemathesis).

Each operation gets generated requests, valid and invalid, sent by an ADMIN API token of an org of its own.
Whatever comes in: no 5xx, only declared status codes, and bodies that match the declared schemas — so the
document a client generates code from tells the truth, errors included.
"""

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from customer_master.app import create_app
from customer_master.auth.models import Role
from tests.conftest import Db, OrgContext, Server, create_customer, make_org

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# The document is the app's own; `test_the_fuzzed_document_is_the_served_one` proves the server serves exactly it.
# (It is built here rather than fetched in a fixture: schemathesis' fixture-based loader does not run on pytest 9.)
DOCUMENT = create_app("postgresql://unused@127.0.0.1:1/unused", "unused-secret").openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def fuzz_org(db: Db, server: Server) -> OrgContext:
    """An org with some data, so that list and export responses have rows to check against their schemas."""
    org = make_org(db)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        create_customer(client, org, contacts=[{"email": "einkauf@muster.de", "name": "Max", "is_primary": True}])
        create_customer(client, org, name="Zeta AG", erp_customer_number=None, billing_address=None, metadata={})
        if "/api/v1/imports/customers" in DOCUMENT["paths"]:
            csv = b"name,erp_customer_number,default_currency,default_language\nImport GmbH,I-1,CHF,de-CH\n"
            response = client.post(
                "/api/v1/imports/customers", files={"file": ("c.csv", csv, "text/csv")}, headers=org.headers()
            )
            assert response.status_code == 200, response.text
    return org


def test_the_fuzzed_document_is_the_served_one(client: httpx.Client) -> None:
    served = client.get("/openapi.json").json()

    assert served == DOCUMENT
    assert any(path.startswith("/api/v1/") for path in served["paths"])


def test_every_operation_declares_its_errors_in_the_one_shape() -> None:
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            responses = operation["responses"]
            errors = {status for status in responses if status.startswith(("4", "5"))}
            assert "503" in errors, label
            if path != "/api/v1/auth/login":
                assert {"401", "403"} <= errors, label
            if "{" in path:
                assert "404" in errors, label
            if "requestBody" in operation:
                assert {"413", "415", "422"} <= errors, label
            for status in errors:
                schema_ref = responses[status]["content"]["application/json"]["schema"]
                assert schema_ref == {"$ref": "#/components/schemas/Error"}, (label, status)
    login = DOCUMENT["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert {"401", "403", "429"} <= set(login)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_survives_fuzzing(case: Any, server: Server, fuzz_org: OrgContext) -> None:
    if case.path == "/api/v1/events" and case.query and "wait" in case.query:
        case.query["wait"] = 0  # a valid wait holds an empty answer open up to 60 s: the fuzzer's time is better spent
    case.call_and_validate(base_url=server.base_url, headers=fuzz_org.headers(Role.ADMIN), checks=CHECKS, timeout=30)
