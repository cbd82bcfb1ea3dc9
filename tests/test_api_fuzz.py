"""API fuzzing from the OpenAPI schema (schemathesis) against the live app: no 5xx, responses match the schema."""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.slow


def test_every_endpoint_conforms_to_its_schema(live_server):
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    tried = {}
    for op in operations:
        count = 0

        @settings(max_examples=int(os.environ.get("DIPLOTAG_FUZZ_EXAMPLES", "30")), deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def check(case):
            nonlocal count
            count += 1
            response = case.call()
            assert response.status_code < 500, f"{op.label}: {response.status_code} {response.text[:300]}"
            case.validate_response(response)

        check()
        tried[op.label] = count
    assert all(n > 0 for n in tried.values()), tried
