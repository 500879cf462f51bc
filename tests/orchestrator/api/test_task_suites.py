"""Task suites: leasing several tasks in one hand-out and answering them in one request."""

import json
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from orchestrator.db import utcnow
from orchestrator.models import Answer, WorkerProject
from tests.orchestrator.api.campaign import Campaign

TASK_KEYS = {"lease_id", "expires_at", "project_id", "data", "instructions", "labels"}


def suite(campaign, worker, size):
    return campaign.client.get(f"/api/v1/tasks/suite?size={size}", headers=worker)


def answer_all(campaign, worker, rows):
    return campaign.client.post("/api/v1/tasks/answers", json={"answers": rows}, headers=worker)


def test_a_suite_holds_distinct_items_and_nothing_about_gold(client, ops, make_key, session):
    campaign = Campaign(client, ops, make_key, session, overlap=3, gold_rate=0.2)
    campaign.import_items(12, gold=4)
    campaign.dispatch()
    ann = campaign.worker("ann")
    response = suite(campaign, ann, 10)
    assert response.status_code == 200
    tasks = response.get_json()["tasks"]
    # 10 tasks, of 10 different items (an item has 3 open slots side by side).
    assert len(tasks) == 10 and len({json.dumps(t["data"]) for t in tasks}) == 10
    assert all(set(task) == TASK_KEYS for task in tasks)
    assert "gold" not in response.get_data(as_text=True)
    gold = [t for t in tasks if t["data"]["n"] >= 1000]
    assert len(gold) == 2  # gold_rate 0.2 of 10
    record = session.scalar(sa.select(WorkerProject))
    assert (record.tasks_seen, record.gold_seen) == (10, 2)


def test_suites_bring_every_item_to_overlap_with_gold_share(client, ops, make_key, session):
    campaign = Campaign(
        client, ops, make_key, session, overlap=2, gold_rate=0.2, gold_min_answers=1000
    )
    campaign.import_items(40, gold=20)
    campaign.dispatch()
    workers = [campaign.worker(name) for name in ("ann", "bob", "cy")]
    handed = Counter()
    active = list(workers)
    while active:
        for worker in list(active):
            response = suite(campaign, worker, 7)
            if response.status_code == 204:
                active.remove(worker)
                continue
            tasks = response.get_json()["tasks"]
            rows = [{"lease_id": t["lease_id"], "label": "dog"} for t in tasks]
            receipt = answer_all(campaign, worker, rows).get_json()
            assert receipt["accepted_count"] == len(tasks) and receipt["rejected"] == []
            handed[worker["Authorization"]] += len(tasks)
    per_item = Counter(
        session.scalars(sa.select(Answer.item_id).where(Answer.is_gold.is_(False))).all()
    )
    assert len(per_item) == 40 and set(per_item.values()) == {2}
    pairs = session.execute(sa.select(Answer.item_id, Answer.worker_id)).all()
    assert len(pairs) == len(set(pairs))  # nobody answered an item twice
    for record in session.scalars(sa.select(WorkerProject)):
        # Each worker's gold share, within one task of gold_rate.
        assert abs(record.gold_seen - 0.2 * record.tasks_seen) <= 1, record.tasks_seen


def test_suite_answers_refuse_bad_rows_one_by_one(client, ops, make_key, session):
    campaign = Campaign(client, ops, make_key, session, overlap=2, gold_rate=0)
    campaign.import_items(5)
    campaign.dispatch()
    ann, bob = campaign.worker("ann"), campaign.worker("bob")
    mine = [t["lease_id"] for t in suite(campaign, ann, 4).get_json()["tasks"]]
    theirs = suite(campaign, bob, 1).get_json()["tasks"][0]["lease_id"]
    campaign.slot(mine[3]).lease_expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    rows = [
        {"lease_id": mine[0], "label": "cat", "time_spent_ms": 1500},
        {"lease_id": mine[1], "label": "horse"},
        {"lease_id": mine[0], "label": "dog"},
        {"lease_id": theirs, "label": "cat"},
        {"lease_id": "no-such-lease", "label": "cat"},
        {"lease_id": mine[3], "label": "cat"},
        {"lease_id": mine[2], "label": "dog"},
    ]
    receipt = answer_all(campaign, ann, rows)
    assert receipt.status_code == 200
    body = receipt.get_json()
    assert [(r["row"], r["label"]) for r in body["accepted"]] == [(0, "cat"), (6, "dog")]
    assert {r["row"]: r["code"] for r in body["rejected"]} == {
        1: "invalid_label",
        2: "duplicate",
        3: "foreign",
        4: "not_found",
        5: "expired",
    }
    assert (body["accepted_count"], body["rejected_count"]) == (2, 5)
    stored = session.execute(sa.select(Answer.label, Answer.time_spent_ms)).all()
    assert sorted(stored, key=lambda r: r.label) == [("cat", 1500), ("dog", stored[1][1])]
    again = answer_all(campaign, ann, rows[:1]).get_json()
    assert again["rejected"][0]["code"] == "answered"
    assert session.scalar(sa.select(sa.func.count()).select_from(Answer)) == 2
    # The refused label left its lease open for a proper answer.
    assert (
        answer_all(campaign, ann, [{"lease_id": mine[1], "label": "dog"}]).get_json()[
            "accepted_count"
        ]
        == 1
    )


def test_a_worker_blocked_mid_request_gets_their_later_rows_refused(client, ops, make_key, session):
    campaign = Campaign(
        client, ops, make_key, session, overlap=1, gold_rate=0.5, gold_min_answers=2
    )
    campaign.import_items(10, gold=10)
    campaign.dispatch()
    bad = campaign.worker("bad")
    tasks = suite(campaign, bad, 10).get_json()["tasks"]
    assert sum(t["data"]["n"] >= 1000 for t in tasks) == 5
    # Gold says cat: answer dog everywhere, gold first so the block comes early.
    tasks.sort(key=lambda t: t["data"]["n"] < 1000)
    body = answer_all(
        campaign, bad, [{"lease_id": t["lease_id"], "label": "dog"} for t in tasks]
    ).get_json()
    assert body["accepted_count"] == 2  # the second wrong gold answer blocks
    assert {r["code"] for r in body["rejected"]} == {"worker_blocked"}
    assert session.scalar(sa.select(WorkerProject.status)) == "blocked"
    assert suite(campaign, bad, 10).status_code == 204


@pytest.mark.parametrize("size", [0, 51])
def test_suite_size_is_bounded(client, ops, make_key, session, size):
    campaign = Campaign(client, ops, make_key, session)
    response = suite(campaign, campaign.worker("ann"), size)
    assert response.status_code == 422
    assert "size" in json.dumps(response.get_json()["error"]["details"])
