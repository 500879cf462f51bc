"""Fuzz every operation from /api/v1/openapi.json: no 5xx, every response matches its schema."""

import csv
import io
import json
import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# CI runs a fixed, repeatable set of examples; QUORUM_FUZZ_EXAMPLES=N explores N random ones.
EXPLORE = "QUORUM_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("QUORUM_FUZZ_EXAMPLES", "40"))

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schemathesis.serializer("application/x-ndjson")
def to_ndjson(ctx, value):
    rows = value if isinstance(value, list) else [value]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@schemathesis.serializer("text/csv")
def to_csv(ctx, value):
    out = io.StringIO()
    writer = csv.writer(out)
    for row in value if isinstance(value, list) else [value]:
        writer.writerow(row.values() if isinstance(row, dict) else [row])
    return out.getvalue().encode()


def test_api_survives_fuzzing(app, client, ops):
    # A project to aim at, so routes with {project_id} reach their real logic.
    client.post("/api/v1/projects", json={"name": "fuzz", "labels": ["a", "b"]}, headers=ops)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=not EXPLORE,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            case.call_and_validate(headers=ops, checks=CHECKS)

        fuzz()
