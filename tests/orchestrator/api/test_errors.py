"""The one JSON error envelope, for every kind of error."""

import psycopg
import pytest
from sqlalchemy.exc import OperationalError


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


def test_malformed_json_is_4xx_envelope(client, ops):
    response = client.post(
        "/api/v1/projects", data="{not json", headers={**ops, "Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert "error" in response.get_json()


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
