"""The one JSON error envelope, for every kind of error."""

import json

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from orchestrator.db import UNSTORABLE_TEXT_MESSAGE
from tests.orchestrator.api.campaign import Campaign


def assert_envelope(response, status, code):
    assert response.status_code == status
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def test_missing_key_is_401(client):
    response = client.get("/api/v1/projects")
    assert_envelope(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_key_is_401(client):
    response = client.get("/api/v1/projects", headers={"Authorization": "Bearer qk_nope"})
    assert_envelope(response, 401, "unauthenticated")


def test_revoked_key_is_401(client, sessions):
    from orchestrator.services import keys

    with sessions.begin() as session:
        key, secret = keys.create_key(session, role="ops")
        keys.revoke_key(session, key_id=key.id)
    response = client.get("/api/v1/projects", headers={"Authorization": f"Bearer {secret}"})
    assert_envelope(response, 401, "unauthenticated")


def test_wrong_role_is_403(client, make_key):
    response = client.post(
        "/api/v1/projects",
        json={"name": "x", "labels": ["a"]},
        headers=make_key("worker", worker="w1"),
    )
    assert_envelope(response, 403, "forbidden")


def test_unknown_route_is_404(client, ops):
    assert_envelope(client.get("/api/v1/nothing-here", headers=ops), 404, "not_found")


def test_wrong_method_is_405(client, ops):
    assert_envelope(client.delete("/api/v1/projects", headers=ops), 405, "method_not_allowed")


def test_malformed_json_is_400_naming_the_body(client, ops):
    response = client.post(
        "/api/v1/projects", data="{not json", headers={**ops, "Content-Type": "application/json"}
    )
    error = assert_envelope(response, 400, "bad_request")
    assert error["details"]["body"][0].startswith("not valid JSON: Expecting property name")


@pytest.mark.parametrize("name", ["a\x00b", "a\ud800b", "\udfff"])
def test_text_no_backend_can_store_is_422_naming_the_field(client, ops, name):
    # json= escapes both as \u0000 / \ud800: valid JSON that decodes to unstorable text.
    response = client.post("/api/v1/projects", json={"name": name, "labels": ["a"]}, headers=ops)
    error = assert_envelope(response, 422, "validation_error")
    assert error["details"] == {"name": [UNSTORABLE_TEXT_MESSAGE]}
    listed = client.get("/api/v1/projects", headers=ops).get_json()
    assert listed["total"] == 0


def test_a_lease_id_with_a_nul_names_no_lease(client, ops, make_key):
    worker = make_key("worker", worker="w1", workforce="internal")
    for action in ("answer", "release"):
        response = client.post(
            f"/api/v1/tasks/ab%00c/{action}", json={"label": "a"}, headers=worker
        )
        assert_envelope(response, 404, "not_found")


def test_json_bodies_past_the_limit_are_413_but_item_files_may_be_larger(app, client, ops):
    app.config["MAX_CONTENT_LENGTH"] = 2000
    padded = {"name": "big", "labels": ["a", "b"], "instructions": "x" * 3000}
    error = assert_envelope(
        client.post("/api/v1/projects", json=padded, headers=ops), 413, "request_entity_too_large"
    )
    assert error["details"] == {"body": ["longer than 2000 bytes"]}
    created = client.post("/api/v1/projects", json={"name": "p", "labels": ["a"]}, headers=ops)
    assert created.status_code == 201
    rows = "".join(
        json.dumps({"external_id": f"i{n}", "data": {"n": n}}) + "\n" for n in range(200)
    )
    assert len(rows) > 2000
    imported = client.post(
        f"/api/v1/projects/{created.get_json()['id']}/items",
        data=rows,
        headers={**ops, "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 201, imported.get_json()
    assert imported.get_json()["created"] == 200


@pytest.fixture
def failing_app(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    return app


def test_unexpected_error_is_500_without_internals(failing_app):
    response = failing_app.test_client().get("/boom")
    error = assert_envelope(response, 500, "internal_error")
    assert "hunter2" not in response.get_data(as_text=True)
    assert error["details"] == {}


@pytest.fixture
def conflicting_app(app):
    @app.get("/deadlock")
    def deadlock():
        raise OperationalError("UPDATE item ...", {}, psycopg.errors.DeadlockDetected("deadlock"))

    @app.get("/disk-full")
    def disk_full():
        raise OperationalError("INSERT ...", {}, psycopg.errors.DiskFull("no space left"))

    return app


def test_deadlock_is_503_with_retry_after(conflicting_app):
    response = conflicting_app.test_client().get("/deadlock")
    assert_envelope(response, 503, "retry")
    assert response.headers["Retry-After"] == "1"


def test_other_database_failures_stay_500(conflicting_app):
    response = conflicting_app.test_client().get("/disk-full")
    assert_envelope(response, 500, "internal_error")
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize("due_at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_deadline_no_backend_can_store_is_422(client, ops, make_key, session, due_at):
    campaign = Campaign(client, ops, make_key, session)
    campaign.import_items(2)
    error = assert_envelope(campaign.dispatch(due_at=due_at), 422, "validation_error")
    assert list(error["details"]) == ["due_at"]
    assert campaign.dispatch(due_at="2030-01-01T00:00:00+00:00").status_code == 201
