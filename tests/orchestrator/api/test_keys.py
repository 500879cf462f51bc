"""API keys: rotation with an overlap window, revocation, expiry, and who may manage which key."""

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from orchestrator.db import utcnow
from orchestrator.models import ApiKey, AuditEvent
from orchestrator.services import keys


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def secret_of(headers):
    return headers["Authorization"].removeprefix("Bearer ")


def key_id_of(session, headers):
    return session.scalar(
        sa.select(ApiKey.id).where(ApiKey.key_hash == keys.hash_key(secret_of(headers)))
    )


def can_list_batches(client, headers):
    return client.get("/api/v1/vendor/batches", headers=headers).status_code


def sleep_until(when):
    time.sleep(max(0.0, (when - utcnow()).total_seconds()) + 0.05)


def test_vendor_rotates_its_key_and_both_work_during_the_overlap(client, make_key, session):
    old = make_key("vendor", vendor="acme")
    old_id = key_id_of(session, old)
    assert can_list_batches(client, old) == 200  # cached in this process from now on
    before = utcnow()
    response = client.post("/api/v1/vendor/keys/rotate", json={"overlap_seconds": 2}, headers=old)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    new = bearer(body["secret"])
    assert body["secret"].startswith("qk_") and body["key"]["prefix"] == body["secret"][:10]
    assert body["previous"]["id"] == old_id and body["previous"]["status"] == "expiring"
    assert body["key"]["status"] == "active" and body["key"]["expires_at"] is None
    # The new key keeps the role, the vendor scope and the name.
    stored_new = session.get(ApiKey, body["key"]["id"])
    stored_old = session.get(ApiKey, old_id)
    assert (stored_new.role, stored_new.vendor_id, stored_new.name) == (
        stored_old.role,
        stored_old.vendor_id,
        stored_old.name,
    )
    assert timedelta(seconds=1) < stored_old.expires_at - before < timedelta(seconds=3)
    assert can_list_batches(client, old) == can_list_batches(client, new) == 200
    # The window ends: the old key is refused at once (cached or not), the new one works.
    sleep_until(stored_old.expires_at)
    refused = client.get("/api/v1/vendor/batches", headers=old)
    assert refused.status_code == 401
    assert refused.get_json()["error"] == {
        "code": "unauthenticated",
        "message": "API key expired",
        "details": {},
    }
    assert can_list_batches(client, new) == 200
    # An expired key cannot be rotated any more.
    again = client.post(f"/api/v1/vendor/keys/{old_id}/rotate", json={}, headers=new)
    assert again.status_code == 409 and again.get_json()["error"]["details"] == {"key": ["expired"]}
    event = session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "key.rotate"))
    assert event.entity_id == str(old_id) and event.details["new_key_id"] == body["key"]["id"]


def test_rotation_never_extends_an_expiry(session):
    key, _ = keys.create_key(session, role="vendor", vendor="acme")
    now = utcnow()
    first = keys.rotate_key(session, key_id=key.id, overlap=timedelta(hours=1), now=now)
    assert first.previous_expires_at == now + timedelta(hours=1)
    # Rotating the old key again (say, a retry) makes another key but never moves its expiry out.
    second = keys.rotate_key(session, key_id=key.id, overlap=timedelta(days=3), now=now)
    assert second.previous_expires_at == now + timedelta(hours=1)
    assert second.key.id != first.key.id
    third = keys.rotate_key(session, key_id=key.id, overlap=timedelta(0), now=now)
    assert third.previous_expires_at == now and keys.key_status(key, now) == "expired"
    with pytest.raises(keys.InvalidInputError):
        keys.rotate_key(session, key_id=first.key.id, overlap=timedelta(days=31))


def test_revocation_is_immediate(client, make_key, session, ops):
    vendor = make_key("vendor", vendor="acme")
    vendor_id = key_id_of(session, vendor)
    assert can_list_batches(client, vendor) == 200  # cached in this process
    revoked = client.post(f"/api/v1/keys/{vendor_id}/revoke", headers=ops)
    assert revoked.status_code == 200
    assert revoked.get_json()["status"] == "revoked" and revoked.get_json()["revoked_at"]
    assert can_list_batches(client, vendor) == 401
    # Revoking again changes nothing; rotating a revoked key is refused.
    assert client.post(f"/api/v1/keys/{vendor_id}/revoke", headers=ops).status_code == 200
    rotate = client.post(f"/api/v1/keys/{vendor_id}/rotate", json={}, headers=ops)
    assert rotate.status_code == 409 and rotate.get_json()["error"]["details"] == {
        "key": ["revoked"]
    }


def test_ops_rotates_a_vendor_key_with_the_default_overlap(client, make_key, session, ops):
    vendor = make_key("vendor", vendor="acme")
    vendor_id = key_id_of(session, vendor)
    response = client.post(f"/api/v1/keys/{vendor_id}/rotate", headers=ops)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    session.expire_all()
    ends = session.get(ApiKey, vendor_id).expires_at
    assert timedelta(hours=23, minutes=59) < ends - utcnow() <= timedelta(hours=24)
    new = session.get(ApiKey, body["key"]["id"])
    assert new.role == "vendor" and new.vendor_id == session.get(ApiKey, vendor_id).vendor_id
    assert can_list_batches(client, bearer(body["secret"])) == 200
    listed = client.get("/api/v1/keys?limit=1000", headers=ops).get_json()
    by_id = {key["id"]: key for key in listed["data"]}
    assert by_id[vendor_id]["status"] == "expiring" and by_id[new.id]["status"] == "active"
    assert all(set(key) >= {"prefix", "role"} and "secret" not in key for key in listed["data"])


def test_ops_manages_only_vendor_and_worker_keys_admin_all(client, make_key, session, ops):
    admin = make_key("admin")
    finance_id = key_id_of(session, make_key("finance"))
    worker_id = key_id_of(session, make_key("worker", worker="w-1"))
    for action in ("rotate", "revoke"):
        refused = client.post(f"/api/v1/keys/{finance_id}/{action}", json={}, headers=ops)
        assert refused.status_code == 403, action
    assert client.post(f"/api/v1/keys/{worker_id}/rotate", json={}, headers=ops).status_code == 201
    rotated = client.post(f"/api/v1/keys/{finance_id}/rotate", json={}, headers=admin)
    assert rotated.status_code == 201
    assert rotated.get_json()["key"]["role"] == "finance"
    assert client.post("/api/v1/keys/999999/rotate", json={}, headers=admin).status_code == 404


def test_vendor_cannot_rotate_or_see_another_vendors_key(client, make_key, session):
    acme = make_key("vendor", vendor="acme")
    acme_second = make_key("vendor", vendor="acme")
    beta = make_key("vendor", vendor="beta")
    beta_id = key_id_of(session, beta)
    response = client.post(f"/api/v1/vendor/keys/{beta_id}/rotate", json={}, headers=acme)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    missing = client.post("/api/v1/vendor/keys/999999/rotate", json={}, headers=acme)
    assert missing.get_json() == {
        "error": {**response.get_json()["error"], "message": "API key 999999 not found"}
    }
    assert session.get(ApiKey, beta_id).expires_at is None
    listed = client.get("/api/v1/vendor/keys", headers=acme).get_json()
    assert sorted(key["id"] for key in listed["data"]) == sorted(
        [key_id_of(session, acme), key_id_of(session, acme_second)]
    )
    # Its own other key it may rotate.
    second_id = key_id_of(session, acme_second)
    own = client.post(f"/api/v1/vendor/keys/{second_id}/rotate", json={}, headers=acme)
    assert own.status_code == 201 and own.get_json()["previous"]["id"] == second_id


def test_rotation_body_is_validated(client, make_key):
    vendor = make_key("vendor", vendor="acme")
    response = client.post(
        "/api/v1/vendor/keys/rotate", json={"overlap_seconds": -1}, headers=vendor
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["details"]) == ["overlap_seconds"]
