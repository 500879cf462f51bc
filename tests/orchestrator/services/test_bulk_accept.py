"""Bulk vendor submissions accepted set-wise keep the one-answer-at-a-time rules."""

import pytest
import sqlalchemy as sa

from orchestrator.models import Answer, Assignment, LedgerEntry, WorkerProject
from tests.orchestrator.api.test_vendor import VendorCampaign


@pytest.fixture
def campaign(client, ops, make_key, session):
    return VendorCampaign.with_gold(client, ops, make_key, session)


@pytest.fixture
def acme(campaign, make_key):
    key = make_key("vendor", vendor="acme")
    batch_id = campaign.vendor_batch(campaign.vendor_workforce("acme"))
    refs = [task["task_ref"] for task in campaign.tasks(key, batch_id)]
    gold = campaign.gold_refs(batch_id)
    return key, batch_id, [ref for ref in refs if ref not in gold], sorted(gold)


def row(ref, worker, label="cat"):
    return {"task_ref": ref, "worker_id": worker, "label": label}


def counts(session, project_id):
    session.expire_all()

    def count(model, *where):
        return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))

    return {
        "answers": count(Answer, Answer.project_id == project_id),
        "entries": count(LedgerEntry, LedgerEntry.project_id == project_id),
        "records": count(WorkerProject, WorkerProject.project_id == project_id),
        "open": count(Assignment, Assignment.project_id == project_id, Assignment.status == "open"),
    }


def test_worker_blocked_mid_request_loses_later_rows_but_not_the_slots(campaign, acme):
    key, batch_id, regular, gold = acme
    rows = [row(regular[0], "w-bad", "dog")]  # accepted, then excluded by the block
    rows += [row(ref, "w-bad", "dog") for ref in gold[:3]]  # the third gold answer blocks
    rows += [row(regular[1], "w-bad"), row(regular[1], "w-a"), row(regular[1], "w-b")]
    body = campaign.submit(key, batch_id, rows).get_json()
    assert [r["row"] for r in body["accepted"]] == [0, 1, 2, 3, 5, 6]
    assert [(r["row"], r["code"]) for r in body["rejected"]] == [(4, "worker_blocked")]
    # The refused row took no slot: both of the item's slots went to the next workers.
    session = campaign.session
    session.expire_all()
    statuses = dict(
        session.execute(
            sa.select(Answer.id, Answer.status).where(
                Answer.id.in_([r["answer_id"] for r in body["accepted"]])
            )
        ).all()
    )
    # w-bad's answers, gold included (a vendor's gold is an ordinary task), are excluded.
    excluded = body["accepted"][0]["answer_id"]
    assert [statuses.pop(r["answer_id"]) for r in body["accepted"][:4]] == ["excluded"] * 4
    assert set(statuses.values()) == {"accepted"}
    record = session.scalar(sa.select(WorkerProject).where(WorkerProject.status == "blocked"))
    assert (record.answers, record.gold_answers, record.gold_correct) == (4, 3, 0)
    # The excluded answers' charges are reversed and their slots reopened.
    reversed_ = session.scalar(
        sa.select(sa.func.sum(LedgerEntry.amount_micros)).where(LedgerEntry.answer_id == excluded)
    )
    assert reversed_ == 0
    reopened = session.scalar(
        sa.select(sa.func.count()).where(
            Assignment.batch_id == batch_id, Assignment.status == "excluded"
        )
    )
    assert reopened == 4


def test_same_worker_twice_on_an_item_and_more_rows_than_slots(campaign, acme):
    key, batch_id, regular, _ = acme
    rows = [
        row(regular[0], "w1"),
        row(regular[0], "w1", "dog"),  # same worker, same item, same request
        row(regular[0], "w2"),
        row(regular[0], "w3"),  # overlap 2: no slot left
        row(regular[1], "w3"),
    ]
    body = campaign.submit(key, batch_id, rows).get_json()
    assert [r["row"] for r in body["accepted"]] == [0, 2, 4]
    assert [(r["row"], r["code"]) for r in body["rejected"]] == [
        (1, "duplicate_answer"),
        (3, "no_open_slot"),
    ]
    session = campaign.session
    session.expire_all()
    answered = session.execute(
        sa.select(Assignment.id, Assignment.worker_id, Answer.worker_id)
        .join(Answer, Answer.assignment_id == Assignment.id)
        .where(Assignment.status == "answered")
    ).all()
    assert len(answered) == 3 and all(slot_worker == by for _, slot_worker, by in answered)
    charges = session.scalars(
        sa.select(LedgerEntry.idempotency_key).where(LedgerEntry.kind == "vendor_charge")
    ).all()
    assert sorted(charges) == sorted(
        f"answer:{r['answer_id']}:vendor_charge" for r in body["accepted"]
    )


def test_atomic_request_with_one_bad_row_stores_nothing(campaign, acme):
    key, batch_id, regular, gold = acme
    before = counts(campaign.session, campaign.project_id)
    rows = [row(ref, f"w{n}") for n, ref in enumerate(regular + gold)]
    rows.append(row(regular[0], "w-late", "parrot"))
    refused = campaign.submit(key, batch_id, rows, idempotency_key="all", atomic=True)
    assert refused.status_code == 422
    assert [r["row"] for r in refused.get_json()["error"]["details"]["rows"]] == [len(rows) - 1]
    assert counts(campaign.session, campaign.project_id) == before


def test_repeated_idempotency_key_stores_nothing_twice(campaign, acme):
    key, batch_id, regular, gold = acme
    rows = [row(ref, worker) for ref in regular + gold for worker in ("w1", "w2")]
    first = campaign.submit(key, batch_id, rows, idempotency_key="bulk-1")
    after_first = counts(campaign.session, campaign.project_id)
    again = campaign.submit(key, batch_id, rows, idempotency_key="bulk-1")
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert first.get_json()["accepted_count"] == len(rows)
    assert after_first["answers"] == len(rows) and after_first["open"] == 0
    assert counts(campaign.session, campaign.project_id) == after_first
