"""Dispatch, the internal pool's leases, gold scoring and blocking, through the HTTP API."""

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from orchestrator.db import utcnow
from orchestrator.models import Answer, WorkerProject
from tests.orchestrator.api.campaign import LABELS, Campaign

TASK_KEYS = {"lease_id", "expires_at", "project_id", "data", "instructions", "labels"}


@pytest.fixture
def campaign(client, ops, make_key, session):
    return Campaign(client, ops, make_key, session)


def test_dispatch_splits_items_into_batches_with_gold(campaign):
    campaign.import_items(8, gold=4)
    response = campaign.dispatch(batch_size=4)
    assert response.status_code == 201
    batches = response.get_json()["data"]
    assert [b["item_count"] for b in batches] == [4, 4]
    assert all(b["status"] == "published" and b["gold_count"] >= 1 for b in batches)
    assert all(b["slot_count"] == 4 * 2 for b in batches)  # pull: gold slots come on demand
    again = campaign.dispatch()
    assert again.status_code == 409
    assert "no pending items" in again.get_json()["error"]["message"]


def test_overlap_holds_across_workforces(campaign):
    campaign.import_items(3)
    other = campaign.workforce("second-pool")
    first = campaign.dispatch().get_json()["data"][0]
    assert campaign.dispatch(other).status_code == 409
    cancelled = campaign.client.post(f"/api/v1/batches/{first['id']}/cancel", headers=campaign.ops)
    assert cancelled.get_json()["status"] == "cancelled"
    moved = campaign.dispatch(other).get_json()["data"]
    assert moved[0]["slot_count"] == 3 * 2


def test_task_shows_data_instructions_labels_and_nothing_about_gold(campaign):
    campaign.import_items(0, gold=3)
    campaign.import_items(2)
    campaign.dispatch()
    worker = campaign.worker("ann")
    tasks = campaign.work_until_done([worker])
    assert tasks, "the worker got no task"
    for task in tasks:
        assert set(task) == TASK_KEYS
        assert task["labels"] == LABELS and task["instructions"] == "Is it a cat or a dog?"
        assert "gold" not in json.dumps(task) and 'cat"' not in json.dumps(task["data"])
    assert any(
        campaign.session.scalar(sa.select(Answer.is_gold).where(Answer.id == a.id))
        for a in campaign.session.scalars(sa.select(Answer))
    )


def test_each_item_gets_exactly_overlap_answers_from_distinct_workers(campaign):
    campaign.import_items(6, gold=2)
    campaign.dispatch(batch_size=3)
    workers = [campaign.worker(f"w{n}") for n in range(4)]
    campaign.work_until_done(workers, answer_for=lambda slot, item: item.gold_label or "dog")
    answers = campaign.session.execute(
        sa.select(Answer.item_id, Answer.worker_id).where(Answer.is_gold.is_(False))
    ).all()
    per_item = {}
    for item_id, worker_id in answers:
        per_item.setdefault(item_id, []).append(worker_id)
    assert len(per_item) == 6
    assert all(len(ws) == 2 and len(set(ws)) == 2 for ws in per_item.values())
    progress = campaign.client.get(
        f"/api/v1/projects/{campaign.project_id}/progress", headers=campaign.ops
    ).get_json()
    assert (progress["answered_to_overlap"], progress["pending"], progress["in_progress"]) == (
        6,
        0,
        0,
    )


def test_lease_errors(campaign):
    campaign.import_items(2)
    campaign.dispatch()
    ann, bob = campaign.worker("ann"), campaign.worker("bob")
    lease = campaign.next(ann).get_json()["lease_id"]

    wrong_label = campaign.answer(ann, lease, "horse")
    assert wrong_label.status_code == 422
    assert "label" in wrong_label.get_json()["error"]["details"]

    foreign = campaign.answer(bob, lease, "cat")
    assert foreign.status_code == 409 and "another worker" in foreign.get_json()["error"]["message"]

    assert campaign.answer(ann, lease, "cat").status_code == 201
    twice = campaign.answer(ann, lease, "cat")
    assert twice.status_code == 409 and twice.get_json()["error"]["details"] == {
        "lease": ["answered"]
    }

    unknown = campaign.answer(ann, "no-such-lease", "cat")
    assert unknown.status_code == 404


def test_expired_lease_is_refused_and_its_slot_returns_to_the_queue(campaign):
    campaign.import_items(1)
    campaign.dispatch()
    ann, bob, cy = campaign.worker("ann"), campaign.worker("bob"), campaign.worker("cy")
    first = campaign.next(ann).get_json()
    second = campaign.next(bob).get_json()
    assert campaign.next(cy).status_code == 204  # overlap 2: both slots leased
    slot = campaign.slot(first["lease_id"])
    slot.lease_expires_at = utcnow() - timedelta(seconds=1)
    campaign.session.commit()

    late = campaign.answer(ann, first["lease_id"], "cat")
    assert late.status_code == 409 and late.get_json()["error"]["details"] == {"lease": ["expired"]}
    retaken = campaign.next(cy)
    assert retaken.status_code == 200 and retaken.get_json()["data"] == first["data"]
    assert campaign.next(ann).status_code == 204  # never the same item again
    assert campaign.answer(bob, second["lease_id"], "dog").status_code == 201
    assert campaign.answer(cy, retaken.get_json()["lease_id"], "dog").status_code == 201


def test_release_gives_the_task_back(campaign):
    campaign.import_items(1)
    campaign.dispatch()
    ann, bob, cy = campaign.worker("ann"), campaign.worker("bob"), campaign.worker("cy")
    lease = campaign.next(ann).get_json()["lease_id"]
    campaign.next(bob)
    released = campaign.client.post(f"/api/v1/tasks/{lease}/release", headers=ann)
    assert released.status_code == 204
    assert campaign.next(cy).status_code == 200


def test_oldest_batch_is_served_first_even_its_reopened_slots(campaign):
    campaign.import_items(2)
    first, second = (b["id"] for b in campaign.dispatch(batch_size=1).get_json()["data"])
    ann, bob, cy = campaign.worker("ann"), campaign.worker("bob"), campaign.worker("cy")
    lease = campaign.next(ann).get_json()["lease_id"]
    assert campaign.slot(lease).batch_id == first
    campaign.client.post(f"/api/v1/tasks/{lease}/release", headers=ann)
    # The released slot is a new row, after every slot of the second batch; still first.
    served = [campaign.slot(campaign.next(w).get_json()["lease_id"]).batch_id for w in (bob, cy)]
    assert served == [first, first]
    assert campaign.slot(campaign.next(ann).get_json()["lease_id"]).batch_id == second


def test_large_imports_and_dispatches_refresh_postgresql_statistics(campaign, engine):
    statements = []

    def record(conn, cursor, statement, *args):
        if statement.startswith("ANALYZE"):
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        campaign.import_items(10)
        campaign.dispatch()  # 20 slots: too few to bother
        campaign.import_items(600)  # 590 new items: too few
        small = list(statements)
        campaign.dispatch()  # 1,180 slots
        campaign.import_items(1600)  # 1,000 new items
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert small == []
    if engine.dialect.name == "postgresql":
        assert statements == ["ANALYZE assignment, batch_item", "ANALYZE item"]
    else:
        assert statements == []  # SQLite plans without sampled statistics


def test_worker_failing_gold_is_blocked_and_their_answers_reopened(campaign):
    campaign.import_items(12, gold=6)
    campaign.dispatch()
    bad, good = campaign.worker("bad"), campaign.worker("good")
    blocked_after = None
    for turn in range(30):
        response = campaign.next(bad)
        if response.status_code == 204:
            blocked_after = turn
            break
        task = response.get_json()
        assert campaign.answer(bad, task["lease_id"], "dog").status_code == 201  # gold says cat
    assert blocked_after is not None, "the failing worker was never blocked"
    record = campaign.session.scalar(
        sa.select(WorkerProject).where(WorkerProject.status == "blocked")
    )
    assert record.gold_answers >= 3 and record.gold_correct == 0
    statuses = set(
        campaign.session.scalars(
            sa.select(Answer.status).where(
                Answer.worker_id == record.worker_id, Answer.is_gold.is_(False)
            )
        )
    )
    assert statuses == {"excluded"}
    # Reopened slots: the good worker can still bring every item to its overlap.
    campaign.work_until_done(
        [good, campaign.worker("third")], answer_for=lambda slot, item: item.gold_label or "dog"
    )
    accepted = campaign.session.execute(
        sa.select(Answer.item_id, sa.func.count())
        .where(Answer.status == "accepted", Answer.is_gold.is_(False))
        .group_by(Answer.item_id)
    ).all()
    assert len(accepted) == 12 and {n for _, n in accepted} == {2}
    report = campaign.client.get(
        f"/api/v1/projects/{campaign.project_id}/workers", headers=campaign.ops
    ).get_json()["data"]
    by_name = {w["external_id"]: w for w in report}
    assert by_name["bad"]["status"] == "blocked" and by_name["bad"]["gold_accuracy"] == 0.0
    assert by_name["good"]["gold_accuracy"] == 1.0
    low, high = by_name["good"]["gold_accuracy_interval"]
    assert 0 < low < 1.0 and high == 1.0
    assert by_name["good"]["median_seconds"] is not None


def test_gold_share_per_worker(client, ops, make_key, session):
    campaign = Campaign(
        client, ops, make_key, session, overlap=1, gold_rate=0.2, gold_min_answers=1000
    )
    campaign.import_items(80, gold=30)
    campaign.dispatch()
    worker = campaign.worker("solo")
    tasks = campaign.work_until_done([worker])
    gold = session.scalar(sa.select(sa.func.count()).where(Answer.is_gold.is_(True)))
    share = gold / len(tasks)
    # 80 real items at 20% gold: 100 tasks, 20 of them gold; stated tolerance +-3 points.
    assert len(tasks) == 100 and abs(share - 0.2) <= 0.03, share


def test_workforce_config_refuses_secrets(client, ops):
    response = client.post(
        "/api/v1/workforces",
        json={"name": "acme", "kind": "internal", "config": {"api_token": "s3cr3t"}},
        headers=ops,
    )
    assert response.status_code == 422
    assert "config.api_token" in response.get_json()["error"]["details"]
    assert "s3cr3t" not in response.get_data(as_text=True)
    bad_ref = client.post(
        "/api/v1/workforces",
        json={"name": "acme", "kind": "internal", "config": {"token_env": "not a name"}},
        headers=ops,
    )
    assert bad_ref.status_code == 422


def test_unknown_connector_is_a_clear_error(client, ops):
    response = client.post(
        "/api/v1/workforces",
        json={"name": "x", "kind": "internal", "connector": "no-such-thing"},
        headers=ops,
    )
    assert response.status_code == 422
    assert "no connector named 'no-such-thing'" in response.get_json()["error"]["message"]


def test_workforce_names_are_unique(client, ops):
    first = client.post(
        "/api/v1/workforces", json={"name": "pool", "kind": "internal"}, headers=ops
    )
    assert first.status_code == 201
    again = client.post(
        "/api/v1/workforces", json={"name": "pool", "kind": "internal"}, headers=ops
    )
    assert again.status_code == 409
