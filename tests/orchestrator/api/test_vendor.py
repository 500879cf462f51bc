"""The vendor API: scope (404 for other vendors), no gold, row checks, idempotency."""

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.vendor import task_ref
from orchestrator.db import utcnow
from orchestrator.models import (
    Answer,
    Assignment,
    Batch,
    BatchItem,
    IdempotencyKey,
    Item,
    LedgerEntry,
    Worker,
    Workforce,
)
from orchestrator.services import idempotency
from tests.orchestrator.api.campaign import Campaign


class VendorCampaign(Campaign):
    """A project with vendor workforces, their rate cards and keys."""

    def vendor_batch(self, workforce_id, **options):
        response = self.dispatch(workforce_id, **options)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["data"][0]["id"]

    def tasks(self, key, batch_id, limit=50):
        tasks, offset = [], 0
        while True:
            page = self.client.get(
                f"/api/v1/vendor/batches/{batch_id}/tasks?limit={limit}&offset={offset}",
                headers=key,
            )
            assert page.status_code == 200, page.get_json()
            body = page.get_json()
            tasks += body["data"]
            offset += limit
            if offset >= body["total"]:
                return tasks

    def gold_refs(self, batch_id):
        """Task refs of the batch's gold items (what the vendor must never learn)."""
        batch = self.session.get(Batch, batch_id)
        salt = batch.connector_state["task_salt"]
        gold = self.session.scalars(
            sa.select(BatchItem.item_id).where(
                BatchItem.batch_id == batch_id, BatchItem.is_gold.is_(True)
            )
        )
        return {task_ref(salt, item_id) for item_id in gold}

    def submit(self, key, batch_id, rows, idempotency_key=None, atomic=None):
        headers = dict(key)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        query = "" if atomic is None else f"?atomic={str(atomic).lower()}"
        return self.client.post(
            f"/api/v1/vendor/batches/{batch_id}/answers{query}",
            json={"answers": rows},
            headers=headers,
        )

    def answers(self):
        self.session.expire_all()
        return self.session.scalar(
            sa.select(sa.func.count(Answer.id)).where(Answer.project_id == self.project_id)
        )


@pytest.fixture
def campaign(client, ops, make_key, session):
    return VendorCampaign.with_gold(client, ops, make_key, session)


@pytest.fixture
def acme(campaign, make_key):
    workforce = campaign.vendor_workforce("acme")
    batch_id = campaign.vendor_batch(workforce)
    return make_key("vendor", vendor="acme"), batch_id


def test_vendor_batch_lists_its_tasks_with_gold_up_front(campaign, acme):
    key, batch_id = acme
    listed = campaign.client.get("/api/v1/vendor/batches", headers=key).get_json()
    assert [b["id"] for b in listed["data"]] == [batch_id]
    batch = listed["data"][0]
    # 6 items and 4 gold, all with `overlap` slots up front, indistinguishable.
    assert batch["task_count"] == 10 and batch["open_slots"] == 20
    assert batch["labels"] == ["cat", "dog"] and batch["overlap"] == 2
    assert batch["instructions"] == "Is it a cat or a dog?"
    tasks = campaign.tasks(key, batch_id, limit=3)
    assert len(tasks) == 10 and len({t["task_ref"] for t in tasks}) == 10
    assert all(set(t) == {"task_ref", "data"} and set(t["data"]) == {"n"} for t in tasks)
    assert len(campaign.gold_refs(batch_id) & {t["task_ref"] for t in tasks}) == 4


def test_vendor_a_cannot_see_or_touch_vendor_b(campaign, make_key, client):
    a_wf = campaign.vendor_workforce("acme")
    b_wf = campaign.vendor_workforce("beta")
    a_batch = campaign.vendor_batch(a_wf, max_items=3)
    b_batch = campaign.vendor_batch(b_wf)
    a_key, b_key = make_key("vendor", vendor="acme"), make_key("vendor", vendor="beta")
    b_task = campaign.tasks(b_key, b_batch)[0]["task_ref"]

    listed = client.get("/api/v1/vendor/batches?status=all", headers=a_key).get_json()
    assert [b["id"] for b in listed["data"]] == [a_batch] and listed["total"] == 1
    missing = 999_999
    for batch_id in (b_batch, missing):
        for path in ("", "/tasks"):
            response = client.get(f"/api/v1/vendor/batches/{batch_id}{path}", headers=a_key)
            assert response.status_code == 404, (batch_id, path)
            assert response.get_json()["error"] == {
                "code": "not_found",
                "message": f"batch {batch_id} not found",
                "details": {},
            }
        rows = [{"task_ref": b_task, "worker_id": "a1", "label": "cat"}]
        submitted = campaign.submit(a_key, batch_id, rows, idempotency_key=f"k{batch_id}")
        assert submitted.status_code == 404
    assert campaign.answers() == 0
    # The 404 released the key: nothing is stored for it.
    assert campaign.session.scalar(sa.select(sa.func.count(IdempotencyKey.id))) == 0


def test_internal_batches_are_invisible_to_vendors(campaign, make_key, client):
    internal = campaign.vendor_batch(campaign.workforce_id)
    key = make_key("vendor", vendor="acme")
    assert client.get(f"/api/v1/vendor/batches/{internal}", headers=key).status_code == 404
    assert client.get("/api/v1/vendor/batches", headers=key).get_json()["total"] == 0


def test_no_vendor_route_reveals_gold(campaign, acme):
    key, batch_id = acme
    tasks = campaign.tasks(key, batch_id)
    gold = campaign.gold_refs(batch_id)
    rows = [{"task_ref": t["task_ref"], "worker_id": "w1", "label": "dog"} for t in tasks]
    responses = [
        campaign.client.get("/api/v1/vendor/batches", headers=key),
        campaign.client.get(f"/api/v1/vendor/batches/{batch_id}", headers=key),
        campaign.client.get(f"/api/v1/vendor/batches/{batch_id}/tasks", headers=key),
        campaign.submit(key, batch_id, rows, idempotency_key="all"),
        campaign.submit(key, batch_id, rows, idempotency_key="all"),
    ]
    external_ids = set(campaign.session.scalars(sa.select(Item.external_id)))
    for response in responses:
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        assert "gold" not in text and "is_correct" not in text, text
        body = json.dumps(response.get_json())
        assert not any(f'"{external}"' in body for external in external_ids)
    accepted = responses[3].get_json()["accepted"]
    # Gold rows look like the others: same keys, no flag.
    assert {tuple(sorted(row)) for row in accepted} == {
        ("answer_id", "row", "task_ref", "worker_id")
    }
    assert {row["task_ref"] for row in accepted} & gold  # gold rows were among them


def test_a_vendor_gets_gold_it_has_not_seen_until_all_gold_has_gone_to_it(
    client, ops, make_key, session, caplog
):
    # 4 gold items; batches of 3 items at 40% gold get 2 gold each.
    campaign = VendorCampaign(client, ops, make_key, session, gold_rate=0.4)
    campaign.import_items(9, gold=4)
    workforce = campaign.vendor_workforce("acme")

    def gold_data(batch_id):
        key = make_key("vendor", vendor="acme")
        gold = campaign.gold_refs(batch_id)
        return {
            json.dumps(t["data"]) for t in campaign.tasks(key, batch_id) if t["task_ref"] in gold
        }

    first, second = (campaign.vendor_batch(workforce, max_items=3) for _ in range(2))
    assert len(gold_data(first)) == len(gold_data(second)) == 2
    # Ordinary items go out once: gold recurring in a vendor's batches would mark it.
    assert not gold_data(first) & gold_data(second)
    assert "gold sent again" not in caplog.text
    third = campaign.vendor_batch(workforce, max_items=3)  # every gold item has gone out
    assert len(gold_data(third)) == 2
    assert "gold sent again to a workforce" in caplog.text
    # Another workforce starts afresh: all 4 gold items are new to it.
    caplog.clear()
    campaign.import_items(12, gold=4)  # 3 more items
    beta = campaign.vendor_workforce("beta")
    assert campaign.dispatch(beta, max_items=3).status_code == 201
    assert "gold sent again" not in caplog.text


def test_dynamic_overlap_tops_up_gold_like_any_task(client, ops, make_key, session):
    # A vendor answering every task with two workers who disagree makes every ordinary
    # task unsure. Had only those got more slots, the tasks refused a third answer would
    # have been exactly the gold ones.
    campaign = VendorCampaign.with_gold(
        client, ops, make_key, session, max_overlap=4, confidence_target=0.95
    )
    batch_id = campaign.vendor_batch(campaign.vendor_workforce("acme"))
    key = make_key("vendor", vendor="acme")
    refs = [task["task_ref"] for task in campaign.tasks(key, batch_id)]
    gold = campaign.gold_refs(batch_id)
    rows = [{"task_ref": refs[0], "worker_id": "first0", "label": "cat"}]  # the batch stays open
    for n, ref in enumerate(refs[1:], 1):
        rows += [
            {"task_ref": ref, "worker_id": f"first{n}", "label": "cat"},
            {"task_ref": ref, "worker_id": f"second{n}", "label": "dog"},
        ]
    assert campaign.submit(key, batch_id, rows).get_json()["rejected_count"] == 0
    topped = client.post(f"/api/v1/projects/{campaign.project_id}/aggregate", headers=ops)
    assert topped.status_code == 200 and topped.get_json()["topped_up"] == len(refs) - 1
    # A gold top-up is a gold slot, reserved at the gold price like the batch's first ones.
    slots = session.execute(
        sa.select(
            Assignment.item_id, Assignment.is_gold, Assignment.status, Assignment.reserved_micros
        )
        .join(Item, Item.id == Assignment.item_id)
        .where(Assignment.batch_id == batch_id, Item.gold_label.is_not(None))
    ).all()
    opened = [slot for slot in slots if slot.status == "open"]
    assert opened and all(slot.is_gold for slot in opened)
    assert {slot.reserved_micros for slot in opened} == {s.reserved_micros for s in slots} != {0}
    third = [
        {"task_ref": ref, "worker_id": f"third{n}", "label": "cat"} for n, ref in enumerate(refs)
    ]
    body = campaign.submit(key, batch_id, third).get_json()
    assert {row["task_ref"] for row in body["accepted"]} == set(refs)
    assert body["rejected"] == []
    assert gold & set(refs[1:])  # gold among the topped-up tasks
    # Their answers are scored as gold, like every other gold answer.
    scored = session.scalars(
        sa.select(Answer.is_correct).where(
            Answer.batch_id == batch_id,
            Answer.worker_id.in_(sa.select(Worker.id).where(Worker.external_id.like("third%"))),
        )
    ).all()
    assert sum(value is not None for value in scored) == len(gold)


def test_rows_are_checked_and_valid_ones_stored(campaign, acme):
    key, batch_id = acme
    refs = [t["task_ref"] for t in campaign.tasks(key, batch_id)]
    first = campaign.submit(
        key,
        batch_id,
        [
            {"task_ref": refs[0], "worker_id": "w1", "label": "cat", "time_spent_ms": 1200},
            {"task_ref": refs[0], "worker_id": "w2", "label": "dog"},
        ],
    )
    assert first.status_code == 200 and first.get_json()["accepted_count"] == 2
    response = campaign.submit(
        key,
        batch_id,
        [
            {"task_ref": refs[1], "worker_id": "w1", "label": "cat"},  # ok
            {"task_ref": "t_nope", "worker_id": "w1", "label": "cat"},
            {"task_ref": refs[2], "worker_id": "w1", "label": "horse"},
            {"task_ref": refs[1], "worker_id": "w1", "label": "dog"},  # same worker again
            {"task_ref": refs[0], "worker_id": "w1", "label": "cat"},  # answered before
            {"task_ref": refs[0], "worker_id": "w3", "label": "cat"},  # overlap reached
            {"task_ref": refs[2], "worker_id": "w3", "label": "dog"},  # ok
        ],
    )
    assert response.status_code == 200
    body = response.get_json()
    assert [row["row"] for row in body["accepted"]] == [0, 6]
    assert [(row["row"], row["code"]) for row in body["rejected"]] == [
        (1, "unknown_task"),
        (2, "invalid_label"),
        (3, "duplicate_answer"),
        (4, "duplicate_answer"),
        (5, "no_open_slot"),
    ]
    assert "cat, dog" in body["rejected"][1]["reason"]
    assert body["accepted_count"] == 2 and body["rejected_count"] == 5
    assert campaign.answers() == 4
    stored = campaign.session.scalar(sa.select(Answer).where(Answer.time_spent_ms == 1200))
    assert stored.label == "cat" and stored.status == "accepted"
    # Every accepted answer is on the ledger at the vendor's rate.
    charges = campaign.session.scalars(
        sa.select(LedgerEntry.amount_micros).where(
            LedgerEntry.project_id == campaign.project_id, LedgerEntry.kind == "vendor_charge"
        )
    ).all()
    assert len(charges) == 4 and set(charges) == {100_000}
    assert campaign.session.get(Batch, batch_id).status == "in_progress"


def test_same_key_and_body_replays_and_stores_nothing_twice(campaign, acme):
    key, batch_id = acme
    refs = [t["task_ref"] for t in campaign.tasks(key, batch_id)]
    # "cat" is every gold answer, so w1 stays unblocked whatever tasks are gold.
    rows = [{"task_ref": ref, "worker_id": "w1", "label": "cat"} for ref in refs[:3]]
    first = campaign.submit(key, batch_id, rows, idempotency_key="req-1")
    again = campaign.submit(key, batch_id, rows, idempotency_key="req-1")
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json()
    assert first.get_json()["accepted_count"] == 3
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert campaign.answers() == 3

    changed = campaign.submit(key, batch_id, rows[:2], idempotency_key="req-1")
    assert changed.status_code == 409
    assert changed.get_json()["error"]["code"] == "idempotency_conflict"
    atomic = campaign.submit(key, batch_id, rows, idempotency_key="req-1", atomic=True)
    assert atomic.status_code == 409  # the query is part of the request
    # Without the key, the same rows are refused row by row, never stored twice.
    plain = campaign.submit(key, batch_id, rows)
    assert {row["code"] for row in plain.get_json()["rejected"]} == {"duplicate_answer"}
    assert campaign.answers() == 3
    stored = campaign.session.scalar(sa.select(IdempotencyKey))
    assert stored.status == "completed"
    assert (stored.expires_at - stored.created_at).days == 7


def test_keys_are_scoped_to_the_vendor(campaign, make_key):
    a_key = make_key("vendor", vendor="acme")
    b_key = make_key("vendor", vendor="beta")
    a_batch = campaign.vendor_batch(campaign.vendor_workforce("acme"), max_items=3)
    b_batch = campaign.vendor_batch(campaign.vendor_workforce("beta"))
    a_ref = campaign.tasks(a_key, a_batch)[0]["task_ref"]
    b_ref = campaign.tasks(b_key, b_batch)[0]["task_ref"]
    a = campaign.submit(
        a_key, a_batch, [{"task_ref": a_ref, "worker_id": "x", "label": "cat"}], "same"
    )
    b = campaign.submit(
        b_key, b_batch, [{"task_ref": b_ref, "worker_id": "x", "label": "cat"}], "same"
    )
    assert a.status_code == b.status_code == 200
    assert "Idempotent-Replayed" not in b.headers
    assert campaign.answers() == 2


def test_a_request_still_running_with_the_key_is_409(campaign, acme, sessions):
    key, batch_id = acme
    ref = campaign.tasks(key, batch_id)[0]["task_ref"]
    rows = [{"task_ref": ref, "worker_id": "w1", "label": "cat"}]
    path = f"/api/v1/vendor/batches/{batch_id}/answers"
    request_hash = idempotency.fingerprint("POST", path, {"atomic": False}, {"answers": rows})
    vendor_id = campaign.session.scalar(
        sa.select(Workforce.vendor_id)
        .join(Batch, Batch.workforce_id == Workforce.id)
        .where(Batch.id == batch_id)
    )
    with sessions.begin() as session:
        running = idempotency.claim(
            session, scope=f"vendor:{vendor_id}", key="race", request_hash=request_hash
        )
    assert isinstance(running, idempotency.Claim)
    racing = campaign.submit(key, batch_id, rows, idempotency_key="race")
    assert racing.status_code == 409
    assert racing.get_json()["error"]["details"] == {"Idempotency-Key": ["in progress"]}
    assert campaign.answers() == 0
    # A claim abandoned by a crashed process is taken over once stale.
    with sessions.begin() as session:
        session.execute(
            sa.update(IdempotencyKey).values(
                locked_at=utcnow() - idempotency.STALE_CLAIM - timedelta(seconds=1)
            )
        )
    retried = campaign.submit(key, batch_id, rows, idempotency_key="race")
    assert retried.status_code == 200 and retried.get_json()["accepted_count"] == 1


def test_atomic_submission_stores_nothing_when_a_row_is_bad(campaign, acme):
    key, batch_id = acme
    refs = [t["task_ref"] for t in campaign.tasks(key, batch_id)]
    rows = [
        {"task_ref": refs[0], "worker_id": "w1", "label": "cat"},
        {"task_ref": refs[1], "worker_id": "w1", "label": "parrot"},
    ]
    refused = campaign.submit(key, batch_id, rows, idempotency_key="atom", atomic=True)
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["code"] == "rows_rejected"
    assert [(r["row"], r["code"]) for r in error["details"]["rows"]] == [(1, "invalid_label")]
    assert campaign.answers() == 0
    # Errors are not stored: the corrected request may reuse the key.
    rows[1]["label"] = "dog"
    fixed = campaign.submit(key, batch_id, rows, idempotency_key="atom", atomic=True)
    assert fixed.status_code == 200 and fixed.get_json()["accepted_count"] == 2
    assert campaign.answers() == 2


def test_worker_blocked_on_gold_is_refused_with_a_reason(campaign, acme):
    key, batch_id = acme
    refs = [t["task_ref"] for t in campaign.tasks(key, batch_id)]
    gold = sorted(campaign.gold_refs(batch_id))
    regular = [ref for ref in refs if ref not in gold]
    # Gold answers are "cat"; w-bad answers "dog" on the first 3 gold tasks, then more.
    rows = [{"task_ref": ref, "worker_id": "w-bad", "label": "dog"} for ref in gold[:3]]
    rows += [{"task_ref": regular[0], "worker_id": "w-bad", "label": "dog"}]
    rows += [{"task_ref": regular[0], "worker_id": "w-good", "label": "cat"}]
    body = campaign.submit(key, batch_id, rows).get_json()
    assert [r["row"] for r in body["accepted"]] == [0, 1, 2, 4]
    assert [(r["row"], r["code"]) for r in body["rejected"]] == [(3, "worker_blocked")]
    reason = body["rejected"][0]["reason"]
    assert "blocked" in reason and "another worker" in reason
    # w-bad's answers are excluded and their slots asked again, gold like any task: of the
    # 20 slots, w-good's answer alone is still taken.
    batch = campaign.client.get(f"/api/v1/vendor/batches/{batch_id}", headers=key).get_json()
    assert batch["open_slots"] == 19
    later = campaign.submit(
        key, batch_id, [{"task_ref": regular[1], "worker_id": "w-bad", "label": "cat"}]
    ).get_json()
    assert later["rejected"][0]["code"] == "worker_blocked"
    report = campaign.client.get(
        f"/api/v1/projects/{campaign.project_id}/workers", headers=campaign.ops
    ).get_json()["data"]
    statuses = {w["external_id"]: w["status"] for w in report}
    assert statuses == {"w-bad": "blocked", "w-good": "active"}


def test_closed_batch_refuses_answers(campaign, acme):
    key, batch_id = acme
    ref = campaign.tasks(key, batch_id)[0]["task_ref"]
    cancel = campaign.client.post(f"/api/v1/batches/{batch_id}/cancel", headers=campaign.ops)
    assert cancel.status_code == 200
    response = campaign.submit(key, batch_id, [{"task_ref": ref, "worker_id": "w", "label": "cat"}])
    assert response.status_code == 409
    assert response.get_json()["error"]["details"] == {"batch": ["cancelled"]}
    listed = campaign.client.get("/api/v1/vendor/batches", headers=key).get_json()
    assert listed["total"] == 0
    cancelled = campaign.client.get("/api/v1/vendor/batches?status=cancelled", headers=key)
    assert cancelled.get_json()["total"] == 1


def test_submission_body_is_validated(campaign, acme):
    key, batch_id = acme
    for body in ({}, {"answers": []}, {"answers": [{"task_ref": "x", "label": "cat"}]}):
        response = campaign.client.post(
            f"/api/v1/vendor/batches/{batch_id}/answers", json=body, headers=key
        )
        assert response.status_code == 422, body
        assert response.get_json()["error"]["code"] == "validation_error"
