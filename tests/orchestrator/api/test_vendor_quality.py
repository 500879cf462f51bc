"""Vendor quality and SLA: gold accuracy, rejected rows, throughput, late batches; who sees what."""

import json
import math
from datetime import timedelta

import pytest
import sqlalchemy as sa

from orchestrator.db import utcnow
from orchestrator.models import AuditEvent, Batch, Vendor
from quality.gold import wilson_interval
from tests.orchestrator.api.test_vendor import VendorCampaign


@pytest.fixture
def campaign(client, ops, make_key, session):
    # Nobody is blocked (10 gold answers needed first), so every valid row is accepted.
    return VendorCampaign.with_gold(client, ops, make_key, session, gold_min_answers=10)


def quality(client, headers, vendor_id=None):
    path = "/api/v1/vendor/quality" if vendor_id is None else f"/api/v1/vendors/{vendor_id}/quality"
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def vendor_id_of(campaign, workforce_id):
    response = campaign.client.get(f"/api/v1/workforces/{workforce_id}", headers=campaign.ops)
    return response.get_json()["vendor_id"]


def set_batch(campaign, batch_id, **values):
    campaign.session.execute(sa.update(Batch).where(Batch.id == batch_id).values(**values))
    campaign.session.commit()


def test_figures_from_real_submissions(campaign, make_key, client, ops):
    workforce = campaign.vendor_workforce("acme")
    acme_id = vendor_id_of(campaign, workforce)
    first = campaign.vendor_batch(workforce, max_items=3)
    second = campaign.vendor_batch(workforce, max_items=3)
    key = make_key("vendor", vendor="acme")
    refs = [t["task_ref"] for t in campaign.tasks(key, first)]
    gold = sorted(campaign.gold_refs(first))
    regular = [ref for ref in refs if ref not in gold]
    assert gold and regular
    # Gold labels are "cat": w1 gets every other gold task wrong.
    rows = [
        {"task_ref": ref, "worker_id": "w1", "label": "cat" if n % 2 == 0 else "dog"}
        for n, ref in enumerate(gold)
    ]
    rows += [{"task_ref": ref, "worker_id": "w1", "label": "dog"} for ref in regular]
    rows += [
        {"task_ref": "t_nope", "worker_id": "w1", "label": "cat"},
        {"task_ref": regular[0], "worker_id": "w2", "label": "parrot"},
    ]
    sent = campaign.submit(key, first, rows, idempotency_key="q-1")
    assert sent.status_code == 200 and sent.get_json()["rejected_count"] == 2
    # A replay is not counted again; an atomic request with a refused row is counted.
    assert campaign.submit(key, first, rows, idempotency_key="q-1").status_code == 200
    atomic = [
        {"task_ref": regular[0], "worker_id": "w2", "label": "cat"},
        {"task_ref": regular[0], "worker_id": "w3", "label": "horse"},
    ]
    assert campaign.submit(key, first, atomic, atomic=True).status_code == 422
    accepted = len(gold) + len(regular)
    correct = math.ceil(len(gold) / 2)

    figures = quality(client, ops, acme_id)
    assert figures["vendor_id"] == acme_id and figures["vendor"] == "acme"
    assert figures["gold"]["answers"] == len(gold) and figures["gold"]["correct"] == correct
    assert figures["gold"]["accuracy"] == pytest.approx(correct / len(gold))
    low, high = wilson_interval(correct, len(gold))
    assert figures["gold"]["interval_low"] == pytest.approx(low)
    assert figures["gold"]["interval_high"] == pytest.approx(high)
    assert figures["gold_closed_batches_only"] is False
    assert figures["submissions"] == 2
    assert figures["rows_submitted"] == len(rows) + 2 and figures["rows_rejected"] == 3
    assert figures["rejected_share"] == pytest.approx(3 / (len(rows) + 2))
    assert figures["rejected_by_reason"] == {"unknown_task": 1, "invalid_label": 2}
    assert figures["answers_total"] == figures["answers_last_24h"] == accepted
    assert figures["answers_per_hour"] == pytest.approx(accepted / 24)
    assert (figures["batches_with_due"], figures["batches_late"]) == (0, 0)

    # Deadlines: the first batch was due before its answers came and is now complete
    # (late); the second is still open, due in an hour (not late), then past due (late).
    now = utcnow()
    set_batch(
        campaign, first, due_at=now - timedelta(hours=1), status="completed", completed_at=now
    )
    set_batch(campaign, second, due_at=now + timedelta(hours=1))
    figures = quality(client, ops, acme_id)
    assert (figures["batches_with_due"], figures["batches_late"]) == (2, 1)
    assert figures["batches_late_open"] == 0 and figures["late_share"] == 0.5
    set_batch(campaign, second, due_at=now - timedelta(minutes=1))
    figures = quality(client, ops, acme_id)
    assert (figures["batches_late"], figures["batches_late_open"]) == (2, 1)
    # Delivered in full before its due time: on time.
    set_batch(campaign, first, due_at=now + timedelta(minutes=5))
    assert quality(client, ops, acme_id)["batches_late"] == 1
    # Open slots withdrawn at the due time: late, whenever its answers came.
    campaign.session.execute(
        sa.text(
            "UPDATE assignment SET status = 'cancelled' WHERE batch_id = :b AND status = 'open'"
        ),
        {"b": second},
    )
    set_batch(campaign, second, status="completed", completed_at=now)
    figures = quality(client, ops, acme_id)
    assert (figures["batches_late"], figures["batches_late_open"]) == (1, 0)


def test_vendor_sees_only_its_own_figures_and_gold_only_from_closed_batches(
    campaign, make_key, client, ops
):
    acme_wf = campaign.vendor_workforce("acme")
    beta_wf = campaign.vendor_workforce("beta")
    acme_id, beta_id = vendor_id_of(campaign, acme_wf), vendor_id_of(campaign, beta_wf)
    batch = campaign.vendor_batch(acme_wf, max_items=3)
    acme, beta = make_key("vendor", vendor="acme"), make_key("vendor", vendor="beta")
    gold = sorted(campaign.gold_refs(batch))
    rows = [{"task_ref": ref, "worker_id": "w1", "label": "cat"} for ref in gold]
    rows += [{"task_ref": "t_nope", "worker_id": "w1", "label": "cat"}]
    assert campaign.submit(acme, batch, rows).status_code == 200

    own = quality(client, acme)
    assert own["vendor_id"] == acme_id and own["gold_closed_batches_only"] is True
    # The batch is open: a gold count moving with each row would tell which task was gold.
    assert own["gold"] == {
        "answers": 0,
        "correct": 0,
        "accuracy": None,
        "interval_low": 0.0,
        "interval_high": 1.0,
    }
    assert own["answers_total"] == len(gold) and own["rows_rejected"] == 1
    text = json.dumps(own)
    assert not any(ref in text for ref in gold) and "task_ref" not in text
    # Vendor B's own route only ever shows vendor B.
    other = quality(client, beta)
    assert other["vendor_id"] == beta_id and other["vendor"] == "beta"
    assert other["answers_total"] == other["rows_submitted"] == other["submissions"] == 0
    for path in (f"/api/v1/vendors/{acme_id}/quality", "/api/v1/vendors/quality"):
        assert client.get(path, headers=beta).status_code == 403

    assert client.post(f"/api/v1/batches/{batch}/cancel", headers=ops).status_code == 200
    closed = quality(client, acme)
    assert closed["gold"]["answers"] == len(gold) and closed["gold"]["accuracy"] == 1.0
    # Ops reads any vendor by id, and all of them in one list.
    assert quality(client, ops, beta_id)["vendor"] == "beta"
    listed = client.get("/api/v1/vendors/quality", headers=ops).get_json()["data"]
    by_id = {row["vendor_id"]: row for row in listed}
    assert by_id[acme_id]["gold"]["answers"] == len(gold) and by_id[beta_id]["submissions"] == 0
    missing = client.get("/api/v1/vendors/999999/quality", headers=ops)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"


def test_submission_counts_are_kept_per_calling_key(campaign, make_key, session):
    workforce = campaign.vendor_workforce("acme")
    batch = campaign.vendor_batch(workforce, max_items=3)
    key = make_key("vendor", vendor="acme")
    ref = campaign.tasks(key, batch)[0]["task_ref"]
    response = campaign.submit(key, batch, [{"task_ref": ref, "worker_id": "w9", "label": "dog"}])
    assert response.status_code == 200
    event = session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "vendor.submission"))
    assert event.entity_type == "batch" and event.entity_id == str(batch)
    assert event.role == "vendor" and event.api_key_id is not None
    vendor_id = session.scalar(sa.select(Vendor.id).where(Vendor.name == "acme"))
    assert event.details == {
        "vendor_id": vendor_id,
        "rows": 1,
        "accepted": 1,
        "rejected": 0,
        "reasons": {},
    }
    # A request refused as a whole (unknown batch) checks no rows and records nothing.
    assert (
        campaign.submit(
            key, 999_999, [{"task_ref": ref, "worker_id": "w9", "label": "dog"}]
        ).status_code
        == 404
    )
    assert (
        session.scalar(
            sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == "vendor.submission")
        )
        == 1
    )


def test_submissions_recorded_before_the_vendor_was_kept_count_by_their_key(
    campaign, make_key, session, client
):
    workforce = campaign.vendor_workforce("acme")
    beta_workforce = campaign.vendor_workforce("beta")
    batch = campaign.vendor_batch(workforce, max_items=3)
    key = make_key("vendor", vendor="acme")
    ref = campaign.tasks(key, batch)[0]["task_ref"]
    row = {"task_ref": ref, "worker_id": "w9", "label": "dog"}
    assert campaign.submit(key, batch, [row]).status_code == 200
    event = session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "vendor.submission"))
    older = {name: value for name, value in event.details.items() if name != "vendor_id"}
    session.add(
        AuditEvent(
            api_key_id=event.api_key_id,
            role="vendor",
            action=event.action,
            entity_type="batch",
            entity_id=event.entity_id,
            details=older | {"rows": 4, "rejected": 3},
        )
    )
    session.commit()
    acme = quality(client, key)
    assert (acme["submissions"], acme["rows_submitted"], acme["rows_rejected"]) == (2, 5, 3)
    beta = quality(client, campaign.ops, vendor_id_of(campaign, beta_workforce))
    assert (beta["vendor"], beta["submissions"], beta["rows_submitted"]) == ("beta", 0, 0)
