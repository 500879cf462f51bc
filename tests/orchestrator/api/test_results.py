"""Aggregation through the service: results, worker skills, and dynamic overlap top-ups."""

import csv
import io
import json

import pytest
import sqlalchemy as sa

from orchestrator.models import AggregationRun, Assignment, Item, WorkerProject
from tests.orchestrator.api.campaign import Campaign


@pytest.fixture
def campaign(client, ops, make_key, session):
    return Campaign(
        client,
        ops,
        make_key,
        session,
        overlap=3,
        max_overlap=5,
        confidence_target=0.9,
        gold_rate=0.2,
        gold_min_answers=1000,
    )


def truthful(slot, item):
    """Workers who answer 'dog' for even items and 'cat' for odd ones (gold: its label)."""
    return item.gold_label or ("dog" if item.data["n"] % 2 == 0 else "cat")


def results(campaign, **query):
    params = "&".join(f"{k}={v}" for k, v in query.items())
    response = campaign.client.get(
        f"/api/v1/projects/{campaign.project_id}/results?{params}", headers=campaign.ops
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_results_label_every_item_and_rerun_only_when_answers_change(campaign):
    campaign.import_items(6, gold=3)
    campaign.dispatch()
    campaign.work_until_done([campaign.worker(f"w{n}") for n in range(4)], answer_for=truthful)
    lines = [json.loads(line) for line in results(campaign, distribution="true").text.splitlines()]
    assert len(lines) == 6
    for line in lines:
        expected = "dog" if int(line["external_id"][1:]) % 2 == 0 else "cat"
        assert line["label"] == expected and line["answers"] == 3
        assert 0.5 < line["confidence"] <= 1.0
        assert set(line["distribution"]) == {"cat", "dog"}
        assert abs(sum(line["distribution"].values()) - 1) < 1e-6  # float32 posteriors
    runs = campaign.session.scalar(sa.select(sa.func.count()).select_from(AggregationRun))
    results(campaign)
    assert campaign.session.scalar(sa.select(sa.func.count()).select_from(AggregationRun)) == runs
    skills = campaign.session.scalars(sa.select(WorkerProject.skill)).all()
    assert skills and all(skill is not None and skill > 0.5 for skill in skills)
    report = campaign.client.get(
        f"/api/v1/projects/{campaign.project_id}/workers", headers=campaign.ops
    ).get_json()["data"]
    assert all(worker["skill"] is not None for worker in report)


def test_csv_results_with_distribution(campaign):
    campaign.import_items(2, gold=1)
    campaign.dispatch()
    campaign.work_until_done([campaign.worker(f"w{n}") for n in range(3)], answer_for=truthful)
    rows = list(
        csv.DictReader(io.StringIO(results(campaign, format="csv", distribution="true").text))
    )
    assert [row["external_id"] for row in rows] == ["i0", "i1"]
    assert set(rows[0]) == {"external_id", "label", "confidence", "answers", "p_cat", "p_dog"}
    assert float(rows[0]["p_dog"]) > float(rows[0]["p_cat"])


def test_unsure_items_get_one_more_slot_up_to_max_overlap(client, ops, make_key, session):
    campaign = Campaign(
        client,
        ops,
        make_key,
        session,
        overlap=3,
        max_overlap=5,
        confidence_target=0.95,
        gold_rate=0.2,
        gold_min_answers=1000,
    )
    campaign.import_items(4, gold=2)
    campaign.dispatch()

    def split(slot, item):
        # Item i0 gets a 2-1 split (unsure); the others are unanimous.
        if item.gold_label:
            return item.gold_label
        if item.data["n"] == 0:
            split.count = getattr(split, "count", 0) + 1
            return "cat" if split.count == 1 else "dog"
        return "dog"

    workers = [campaign.worker(f"w{n}") for n in range(6)]
    campaign.work_until_done(workers[:3], answer_for=split)
    run = campaign.client.post(
        f"/api/v1/projects/{campaign.project_id}/aggregate", headers=campaign.ops
    ).get_json()
    assert run["ran"] is True
    items = {i.external_id: i for i in campaign.session.scalars(sa.select(Item))}
    unsure = {
        eid
        for eid, item in items.items()
        if item.gold_label is None and item.stopping_confidence < 0.95
    }
    assert "i0" in unsure
    assert run["topped_up"] == len(unsure)
    open_items = set(
        campaign.session.scalars(
            sa.select(Item.external_id)
            .join(Assignment, Assignment.item_id == Item.id)
            .where(Assignment.status == "open")
        )
    )
    assert open_items == unsure  # only the unsure items receive work
    again = campaign.client.post(
        f"/api/v1/projects/{campaign.project_id}/aggregate", headers=campaign.ops
    ).get_json()
    assert again["topped_up"] == 0  # one at a time: the open slot must be answered first
    # Keep answering: no item ever exceeds max_overlap.
    for _ in range(4):
        campaign.work_until_done(
            workers[3:],
            answer_for=lambda slot, item: "cat" if item.data["n"] == 0 else truthful(slot, item),
        )
        campaign.client.post(
            f"/api/v1/projects/{campaign.project_id}/aggregate", headers=campaign.ops
        )
    campaign.session.expire_all()
    assert (
        max(campaign.session.scalars(sa.select(Item.answer_count).where(Item.gold_label.is_(None))))
        <= 5
    )


def test_the_pool_never_tops_up_gold_it_serves_on_demand(client, ops, make_key, session):
    # The pool serves gold on demand: however unsure a gold item's answers leave it, it
    # gets no slot (a vendor's gold would: tests/orchestrator/api/test_vendor.py).
    campaign = Campaign(
        client,
        ops,
        make_key,
        session,
        overlap=2,
        max_overlap=None,
        confidence_target=0.95,
        gold_rate=0.5,
        gold_min_answers=1000,
    )
    campaign.import_items(4, gold=1)
    campaign.dispatch()
    votes = iter(["cat", "dog"] * 10)

    def split_gold(slot, item):
        return next(votes) if item.gold_label else truthful(slot, item)

    campaign.work_until_done([campaign.worker(f"w{n}") for n in range(6)], answer_for=split_gold)
    run = client.post(f"/api/v1/projects/{campaign.project_id}/aggregate", headers=ops).get_json()
    gold = session.scalar(sa.select(Item).where(Item.gold_label.is_not(None)))
    session.refresh(gold)
    assert gold.answer_count >= 2 and gold.stopping_confidence < 0.95  # unsure by its answers
    open_slots = session.scalars(
        sa.select(Assignment.item_id).where(Assignment.status == "open")
    ).all()
    assert gold.id not in open_slots
    assert run["topped_up"] == len(open_slots)


def test_aggregate_without_answers_is_422(campaign):
    campaign.import_items(2)
    response = campaign.client.post(
        f"/api/v1/projects/{campaign.project_id}/aggregate", headers=campaign.ops
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "not_enough_answers"


def test_top_ups_stop_at_the_budget(client, ops, make_key, session):
    campaign = Campaign(
        client,
        ops,
        make_key,
        session,
        overlap=3,
        max_overlap=6,
        confidence_target=0.999,
        gold_rate=0.0,
        reward="0.01",
        budget="0.13",
    )
    campaign.import_items(4)
    campaign.dispatch()  # 12 slots reserve 0.12 of the 0.13 budget
    first = set()

    def split(slot, item):
        if item.id not in first:
            first.add(item.id)
            return "cat"
        return "dog"

    campaign.work_until_done([campaign.worker(f"w{n}") for n in range(3)], answer_for=split)
    run = campaign.client.post(
        f"/api/v1/projects/{campaign.project_id}/aggregate", headers=campaign.ops
    ).get_json()
    assert run["topped_up"] == 1  # four unsure items, money for one more answer
    budget = campaign.client.get(
        f"/api/v1/billing/projects/{campaign.project_id}/budget", headers=campaign.ops
    ).get_json()
    assert budget["remaining"] == "0.00"
