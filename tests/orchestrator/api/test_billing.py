"""Billing through the HTTP API: ledger, budgets, reports, invoices, bonuses and roles."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from connectors.base import WorkforceUnavailableError
from connectors.internal import InternalPoolConnector
from orchestrator.db import utcnow
from orchestrator.models import (
    Answer,
    Assignment,
    Batch,
    Item,
    LedgerEntry,
    Vendor,
    WorkerProject,
    Workforce,
)
from orchestrator.services.answers import Slot, accept_answer
from tests.orchestrator.api.campaign import Campaign

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:schemathesis")


def money(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def ledger(session, **where):
    session.expire_all()
    query = sa.select(LedgerEntry).order_by(LedgerEntry.id)
    for column, value in where.items():
        query = query.where(getattr(LedgerEntry, column) == value)
    return list(session.scalars(query))


def ledger_total(session, **where) -> Decimal:
    return sum((Decimal(e.amount_micros) / 1_000_000 for e in ledger(session, **where)), Decimal(0))


def budget(client, headers, project_id):
    response = client.get(f"/api/v1/billing/projects/{project_id}/budget", headers=headers)
    assert response.status_code == 200, response.get_json()
    return {
        k: money(v) if k not in ("scope", "scope_id", "currency") else v
        for k, v in response.get_json().items()
    }


@pytest.fixture
def finance(make_key):
    return make_key("finance")


def make_campaign(client, ops, make_key, session, **settings):
    defaults = {"reward": "0.05", "gold_rate": 0.25, "gold_min_answers": 100}
    return Campaign(client, ops, make_key, session, **{**defaults, **settings})


# --- ledger --------------------------------------------------------------------------


def test_internal_pool_answers_are_paid_the_project_reward(client, ops, make_key, session):
    campaign = make_campaign(client, ops, make_key, session)
    campaign.import_items(4, gold=2)
    assert campaign.dispatch().status_code == 201
    campaign.work_until_done([campaign.worker("ann"), campaign.worker("bob")])
    answers = list(session.scalars(sa.select(Answer).order_by(Answer.id)))
    assert len(answers) >= 8
    entries = ledger(session)
    assert len(entries) == len(answers)  # one reward each, no fee without a rate card
    by_answer = {e.answer_id: e for e in entries}
    for answer in answers:
        entry = by_answer[answer.id]
        assert (entry.kind, entry.amount_micros, entry.currency) == ("reward", 50_000, "USD")
        assert entry.is_gold == answer.is_gold and entry.worker_id == answer.worker_id
        assert entry.idempotency_key == f"answer:{answer.id}:reward"
        assert entry.rate_card_id is None and entry.project_id == campaign.project_id
    assert any(e.is_gold for e in entries)


def test_rate_cards_price_answers_from_their_start_and_never_reprice(
    client, ops, make_key, session, finance
):
    campaign = make_campaign(client, ops, make_key, session, overlap=1, gold_rate=0.0)
    url = f"/api/v1/workforces/{campaign.workforce_id}/rate-cards"
    card = client.post(
        url,
        json={"price_per_answer": "0.10", "fees": {"fee_per_answer": "0.01"}},
        headers=ops,
    )
    assert card.status_code == 201, card.get_json()
    assert card.get_json()["fees"] == {"fee_per_answer": "0.01"}
    campaign.import_items(4)
    campaign.dispatch()
    ann = campaign.worker("ann")
    for _ in range(2):
        task = campaign.next(ann).get_json()
        assert campaign.answer(ann, task["lease_id"], "cat").status_code == 201
    raised = client.post(url, json={"price_per_answer": "0.20"}, headers=ops)
    assert raised.status_code == 201
    for _ in range(2):
        task = campaign.next(ann).get_json()
        assert campaign.answer(ann, task["lease_id"], "cat").status_code == 201

    entries = ledger(session)
    per_answer = {}
    for entry in entries:
        per_answer.setdefault(entry.answer_id, []).append((entry.kind, entry.amount_micros))
    costs = [per_answer[answer_id] for answer_id in sorted(per_answer)]
    old = [("reward", 100_000), ("platform_fee", 10_000)]
    assert costs == [old, old, [("reward", 200_000)], [("reward", 200_000)]]

    listed = client.get(url, headers=finance).get_json()["data"]
    assert [c["price_per_answer"] for c in listed] == ["0.10", "0.20"]
    # A card that would start before answers already on the ledger is refused.
    backdated = client.post(
        url,
        json={"price_per_answer": "0.30", "effective_from": "2001-01-01T00:00:00Z"},
        headers=ops,
    )
    assert backdated.status_code == 422
    assert "effective_from" in backdated.get_json()["error"]["details"]
    wrong_term = client.post(
        url, json={"price_per_answer": "0.30", "fees": {"masters": True}}, headers=ops
    )
    assert (
        wrong_term.status_code == 422
        and "fees.masters" in wrong_term.get_json()["error"]["details"]
    )
    assert client.post(url, json={"price_per_answer": 0.3}, headers=ops).status_code == 422
    assert client.post(url, json={"price_per_answer": "0.30"}, headers=finance).status_code == 403


def test_hourly_internal_cost_is_reserved_and_billed_by_time(client, ops, make_key, session):
    campaign = make_campaign(client, ops, make_key, session, overlap=1, gold_rate=0.0)
    card = client.post(
        f"/api/v1/workforces/{campaign.workforce_id}/rate-cards",
        json={
            "price_per_answer": "0.05",
            "fees": {"hourly_cost": "36.00", "expected_seconds": 60},
        },
        headers=ops,
    )
    assert card.status_code == 201, card.get_json()
    campaign.import_items(2)
    campaign.dispatch()
    # 60 expected seconds at 36.00 an hour: 0.60 reserved beside the 0.05 piece rate.
    assert budget(client, ops, campaign.project_id)["reserved"] == Decimal("1.30")
    ann = campaign.worker("ann")
    lease = campaign.next(ann).get_json()["lease_id"]
    answered = client.post(
        f"/api/v1/tasks/{lease}/answer", json={"label": "cat", "time_spent_ms": 30_500}, headers=ann
    )
    assert answered.status_code == 201
    entries = ledger(session)
    assert [(e.kind, e.amount_micros) for e in entries] == [("reward", 50_000), ("reward", 305_000)]
    assert [e.idempotency_key.rsplit(":", 1)[-1] for e in entries] == ["reward", "2"]
    state = budget(client, ops, campaign.project_id)
    assert (state["committed"], state["reserved"]) == (Decimal("0.355"), Decimal("0.65"))


def test_excluded_answers_are_reversed_and_their_slots_reserved_again(
    client, ops, make_key, session
):
    campaign = make_campaign(
        client, ops, make_key, session, gold_min_answers=3, budget="100.00", gold_rate=0.25
    )
    campaign.import_items(12, gold=6)
    campaign.dispatch()
    before = budget(client, ops, campaign.project_id)
    bad = campaign.worker("bad")
    for _ in range(30):
        response = campaign.next(bad)
        if response.status_code == 204:
            break
        campaign.answer(bad, response.get_json()["lease_id"], "dog")  # gold says cat
    excluded = list(
        session.scalars(sa.select(Answer).where(Answer.status == "excluded").order_by(Answer.id))
    )
    assert excluded, "the failing worker's answers were never excluded"
    for answer in excluded:
        entries = ledger(session, answer_id=answer.id)
        assert [e.kind for e in entries] == ["reward", "reversal"]
        original, reversal = entries
        assert reversal.amount_micros == -original.amount_micros
        assert (reversal.reverses_id, reversal.reverses_kind) == (original.id, "reward")
        assert reversal.idempotency_key == f"reversal:{original.id}"
    gold = list(session.scalars(sa.select(Answer).where(Answer.is_gold.is_(True))))
    assert gold and all(len(ledger(session, answer_id=a.id)) == 1 for a in gold)
    after = budget(client, ops, campaign.project_id)
    # Gold answers are the only money spent; everything else is reserved again.
    assert after["committed"] == Decimal("0.05") * len(gold)
    assert after["committed"] + after["reserved"] == before["reserved"] + after["committed"]


# --- budgets -------------------------------------------------------------------------


def test_dispatch_over_budget_is_refused_with_the_amount_left(client, ops, make_key, session):
    campaign = make_campaign(client, ops, make_key, session, reward="0.10", budget="1.00")
    campaign.import_items(6)  # overlap 2: 12 slots at 0.10 = 1.20
    refused = campaign.dispatch(batch_size=2)
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["details"]["remaining"] == "1.00" and error["details"]["requested"] == "1.20"
    assert error["details"]["affordable_slots"] == "10" and "1.00 USD left" in error["message"]
    assert session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Assignment)) == 0

    fits = campaign.dispatch(max_items=5, batch_size=2)
    assert fits.status_code == 201
    assert [b["slot_count"] for b in fits.get_json()["data"]] == [4, 4, 2]
    state = budget(client, ops, campaign.project_id)
    assert (state["limit"], state["committed"], state["reserved"], state["remaining"]) == (
        Decimal("1.00"),
        Decimal("0.00"),
        Decimal("1.00"),
        Decimal("0.00"),
    )
    reserved = session.scalars(sa.select(Batch.reserved_micros).order_by(Batch.id)).all()
    assert reserved == [400_000, 400_000, 200_000]


def test_cancel_releases_and_answers_commit(client, ops, make_key, session):
    campaign = make_campaign(
        client, ops, make_key, session, reward="0.10", budget="1.00", gold_rate=0.0
    )
    campaign.import_items(5)
    batch = campaign.dispatch().get_json()["data"][0]
    ann = campaign.worker("ann")
    for _ in range(2):
        task = campaign.next(ann).get_json()
        assert campaign.answer(ann, task["lease_id"], "cat").status_code == 201
    leased = campaign.next(campaign.worker("bob")).get_json()
    state = budget(client, ops, campaign.project_id)
    assert (state["committed"], state["reserved"]) == (Decimal("0.20"), Decimal("0.80"))

    slot = campaign.slot(leased["lease_id"])
    slot.lease_expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert campaign.next(campaign.worker("cy")).status_code == 200  # expiry reopens the slot
    state = budget(client, ops, campaign.project_id)
    assert (state["committed"], state["reserved"]) == (Decimal("0.20"), Decimal("0.80"))

    cancelled = client.post(f"/api/v1/batches/{batch['id']}/cancel", headers=ops)
    assert cancelled.status_code == 200
    state = budget(client, ops, campaign.project_id)
    assert (state["committed"], state["reserved"], state["remaining"]) == (
        Decimal("0.20"),
        Decimal("0.00"),
        Decimal("0.80"),
    )
    assert campaign.dispatch().status_code == 201  # the released money dispatches again


def test_workforce_budget_limits_dispatch_too(client, ops, make_key, session, finance):
    campaign = make_campaign(client, ops, make_key, session, reward="0.10", gold_rate=0.0)
    url = f"/api/v1/billing/workforces/{campaign.workforce_id}/budget"
    assert client.put(url, json={"budget": "0.30"}, headers=finance).status_code == 403
    set_ = client.put(url, json={"budget": "0.30"}, headers=ops)
    assert set_.status_code == 200 and set_.get_json()["limit"] == "0.30"
    campaign.import_items(2)
    refused = campaign.dispatch()
    assert refused.status_code == 409
    assert refused.get_json()["error"]["details"]["budget"] == "workforce"
    assert campaign.dispatch(max_items=1).status_code == 201
    assert client.get(url, headers=finance).get_json()["reserved"] == "0.20"


# --- reports -------------------------------------------------------------------------


def test_cost_reports_reconcile_with_the_ledger_to_the_cent(
    client, ops, make_key, session, finance
):
    campaign = make_campaign(
        client, ops, make_key, session, gold_min_answers=2, aggregation_method="majority_vote"
    )
    url = f"/api/v1/workforces/{campaign.workforce_id}/rate-cards"
    client.post(
        url, json={"price_per_answer": "0.07", "fees": {"fee_per_answer": "0.003"}}, headers=ops
    )
    campaign.import_items(6, gold=3)
    campaign.dispatch(batch_size=3)
    bad = campaign.worker("bad")
    for _ in range(30):  # fails gold: blocked, answers reversed
        response = campaign.next(bad)
        if response.status_code == 204:
            break
        campaign.answer(bad, response.get_json()["lease_id"], "dog")
    campaign.work_until_done(
        [campaign.worker("ann"), campaign.worker("bob")],
        answer_for=lambda slot, item: item.gold_label or "dog",
    )
    total = ledger_total(session)
    assert total > 0
    for group_by in ("project", "workforce", "vendor", "batch", "worker", "day"):
        report = client.get(f"/api/v1/billing/costs?group_by={group_by}", headers=finance)
        assert report.status_code == 200, report.get_json()
        body = report.get_json()
        assert [t["total"] for t in body["totals"]] == [str(total)]
        assert sum(Decimal(g["total"]) for g in body["groups"]) == total, group_by
        for group in body["groups"]:
            parts = sum(Decimal(group[k]) for k in ("rewards", "fees", "gold", "other"))
            assert parts == Decimal(group["total"])
    workers = client.get("/api/v1/billing/costs?group_by=worker", headers=finance).get_json()
    names = {g["name"] for g in workers["groups"]}
    assert {"ann", "bob"} <= names
    bad_row = next(g for g in workers["groups"] if g["name"] == "bad")
    gold_answers = session.scalar(
        sa.select(sa.func.count()).where(
            Answer.is_gold.is_(True), Answer.worker_id == int(bad_row["key"])
        )
    )
    # Only the blocked worker's gold answers still cost money.
    assert Decimal(bad_row["total"]) == Decimal("0.073") * gold_answers

    as_csv = client.get("/api/v1/billing/costs?group_by=batch&format=csv", headers=finance)
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    assert rows[-1]["batch"] == "total" and Decimal(rows[-1]["total"]) == total
    assert sum(Decimal(r["total"]) for r in rows[:-1]) == total
    by_accept = client.get(
        "/api/v1/billing/costs?group_by=day", headers={**finance, "Accept": "text/csv"}
    )
    assert by_accept.mimetype == "text/csv"

    # Cost per label: nothing is labelled before aggregation.
    cpl_url = f"/api/v1/billing/projects/{campaign.project_id}/cost-per-label"
    before = client.get(cpl_url, headers=finance).get_json()
    assert before["labelled_items"] == 0 and before["cost_per_label"] is None
    assert "no items are labelled yet" in before["note"]
    assert (
        client.post(f"/api/v1/projects/{campaign.project_id}/aggregate", headers=ops).status_code
        == 200
    )
    after = client.get(cpl_url, headers=finance).get_json()
    labelled = session.scalar(
        sa.select(sa.func.count()).where(Item.label.is_not(None), Item.gold_label.is_(None))
    )
    assert after["labelled_items"] == labelled == 6 and after["note"] is None
    gold_cost = sum(
        (Decimal(e.amount_micros) / 1_000_000 for e in ledger(session) if e.is_gold), Decimal(0)
    )
    assert Decimal(after["total"]) == total and Decimal(after["gold"]) == gold_cost
    assert Decimal(after["rewards"]) + Decimal(after["fees"]) + Decimal(after["gold"]) == total
    assert Decimal(after["cost_per_label"]) == (total / labelled).quantize(Decimal("0.000001"))
    assert Decimal(after["cost_per_label_without_gold"]) == (
        (total - gold_cost) / labelled
    ).quantize(Decimal("0.000001"))
    assert Decimal(after["fees"]) == Decimal("0.003") * session.scalar(
        sa.select(sa.func.count()).where(Answer.status == "accepted", Answer.is_gold.is_(False))
    )
    cpl_csv = client.get(cpl_url + "?format=csv", headers=finance)
    row = next(csv.DictReader(io.StringIO(cpl_csv.get_data(as_text=True))))
    assert row["cost_per_label"] == after["cost_per_label"]


# --- invoices ------------------------------------------------------------------------


class VendorCampaign:
    """A project worked by an outside vendor, whose answers arrive through the services."""

    def __init__(self, client, ops, session, vendor="acme", **settings):
        self.client, self.ops, self.session = client, ops, session
        project = {"name": "vendor work", "labels": ["cat", "dog"], "overlap": 2, "gold_rate": 0.0}
        self.project_id = client.post(
            "/api/v1/projects", json={**project, **settings}, headers=ops
        ).get_json()["id"]
        vendor_row = session.scalar(sa.select(Vendor).where(Vendor.name == vendor))
        if vendor_row is None:
            vendor_row = Vendor(name=vendor)
            session.add(vendor_row)
            session.flush()
        # No vendor connector is installed yet; the internal one publishes nothing.
        workforce = Workforce(
            name=f"{vendor}-{self.project_id}",
            kind="vendor",
            connector="internal",
            vendor_id=vendor_row.id,
        )
        session.add(workforce)
        session.commit()
        self.vendor_id, self.workforce_id = vendor_row.id, workforce.id

    def rate_card(self, **card):
        response = self.client.post(
            f"/api/v1/workforces/{self.workforce_id}/rate-cards", json=card, headers=self.ops
        )
        assert response.status_code == 201, response.get_json()

    def items(self, count):
        rows = [{"external_id": f"v{n}", "data": {"n": n}} for n in range(count)]
        response = self.client.post(
            f"/api/v1/projects/{self.project_id}/items", json=rows, headers=self.ops
        )
        assert response.status_code == 201, response.get_json()

    def dispatch(self):
        response = self.client.post(
            f"/api/v1/projects/{self.project_id}/batches",
            json={"workforce_id": self.workforce_id},
            headers=self.ops,
        )
        assert response.status_code == 201, response.get_json()

    def answer_all(self, workers=("v-ann", "v-bob")):
        """Answer every open slot as the vendor API would, one worker per slot of an item."""
        from orchestrator.models import Worker

        ids = []
        for ref in workers:
            worker = self.session.scalar(
                sa.select(Worker).where(
                    Worker.workforce_id == self.workforce_id, Worker.external_id == ref
                )
            )
            if worker is None:
                worker = Worker(workforce_id=self.workforce_id, external_id=ref)
                self.session.add(worker)
                self.session.flush()
            ids.append(worker.id)
        slots = self.session.scalars(
            sa.select(Assignment)
            .where(Assignment.project_id == self.project_id, Assignment.status == "open")
            .order_by(Assignment.item_id, Assignment.id)
        ).all()
        turn = {}
        for slot in slots:
            index = turn.get(slot.item_id, 0)
            turn[slot.item_id] = index + 1
            accept_answer(
                self.session,
                slot=Slot(
                    slot.id,
                    slot.item_id,
                    slot.project_id,
                    slot.batch_id,
                    slot.workforce_id,
                    slot.is_gold,
                ),
                worker_id=ids[index % len(ids)],
                label="cat",
                gold_label=None,
            )
        self.session.commit()


def invoice_request(client, headers, vendor_id, start="2000-01-01", end="2100-01-01", **extra):
    return client.post(
        "/api/v1/billing/invoices",
        json={"vendor_id": vendor_id, "period_start": start, "period_end": end, **extra},
        headers=headers,
    )


def test_invoice_is_built_from_the_ledger_and_immutable_once_issued(
    client, ops, make_key, session, finance
):
    vendor = VendorCampaign(client, ops, session)
    vendor.rate_card(price_per_answer="0.123456", price_per_item="0.10", fees={"fee_rate": "0.10"})
    vendor.items(3)
    vendor.dispatch()
    vendor.answer_all()
    vendor_total = ledger_total(session, vendor_id=vendor.vendor_id)
    # 6 answers at 0.123456 + 3 items at 0.10, plus 10% on each answer's charge, rounded
    # half-up to the micro per answer: 0.0223456 -> 0.022346 (with the item), 0.012346.
    charges = Decimal("0.123456") * 6 + Decimal("0.30")
    assert vendor_total == charges + 3 * Decimal("0.022346") + 3 * Decimal("0.012346")

    assert invoice_request(client, ops, vendor.vendor_id).status_code == 403
    draft = invoice_request(client, finance, vendor.vendor_id)
    assert draft.status_code == 201, draft.get_json()
    invoice = draft.get_json()
    assert invoice["status"] == "draft" and invoice["exact_total"] == str(vendor_total)
    assert Decimal(invoice["total"]) == vendor_total.quantize(Decimal("0.01"))
    assert sum(Decimal(line["amount"]) for line in invoice["lines"]) == Decimal(invoice["total"])
    assert invoice["vendor_name"] == "acme"
    # One draft per vendor at a time.
    assert invoice_request(client, finance, vendor.vendor_id).status_code == 409

    issue_url = f"/api/v1/billing/invoices/{invoice['id']}/issue"
    assert client.post(issue_url, headers=ops).status_code == 403
    issued = client.post(issue_url, headers=finance)
    assert issued.status_code == 200 and issued.get_json()["status"] == "issued"
    again = client.post(issue_url, headers=finance)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "invoice_immutable"
    delete = client.delete(f"/api/v1/billing/invoices/{invoice['id']}", headers=finance)
    assert delete.status_code == 409

    # A later reversal for the same period goes to the next invoice, not the issued one.
    from orchestrator.services import ledger as ledger_service

    first_answer = session.scalar(sa.select(Answer.id).order_by(Answer.id).limit(1))
    ledger_service.reverse_answers(session, [first_answer], memo="rejected")
    session.commit()
    unchanged = client.get(f"/api/v1/billing/invoices/{invoice['id']}", headers=finance).get_json()
    assert unchanged == issued.get_json()
    following = invoice_request(
        client, finance, vendor.vendor_id, start="2100-01-01", end="2100-02-01"
    )
    assert following.status_code == 201, following.get_json()
    lines = following.get_json()["lines"]
    assert lines and all(line["is_carried_over"] for line in lines)
    assert all("reversed" in line["description"] for line in lines)
    assert Decimal(following.get_json()["exact_total"]) < 0
    assert invoice_request(client, finance, vendor.vendor_id).status_code == 409  # draft exists

    as_csv = client.get(f"/api/v1/billing/invoices/{invoice['id']}?format=csv", headers=finance)
    assert as_csv.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(as_csv.get_data(as_text=True))))
    assert rows[-1][0] == "Total" and rows[-1][4] == invoice["total"]
    page = client.get(f"/api/v1/billing/invoices/{invoice['id']}/html", headers=finance)
    assert page.mimetype == "text/html" and invoice["number"] in page.get_data(as_text=True)
    same = client.get(f"/api/v1/billing/invoices/{invoice['id']}?format=html", headers=finance)
    assert same.get_data() == page.get_data()
    listed = client.get("/api/v1/billing/invoices?status=issued", headers=finance).get_json()
    assert [i["id"] for i in listed["data"]] == [invoice["id"]]
    listed_csv = client.get("/api/v1/billing/invoices?format=csv", headers=finance)
    assert len(listed_csv.get_data(as_text=True).strip().splitlines()) == 3
    for reader in ("vendor", "worker"):
        headers = make_key(
            reader, **({"vendor": "acme"} if reader == "vendor" else {"worker": "w"})
        )
        assert (
            client.get(f"/api/v1/billing/invoices/{invoice['id']}", headers=headers).status_code
            == 403
        )


def test_vendor_minimum_is_booked_as_an_adjustment(client, ops, session, finance):
    vendor = VendorCampaign(client, ops, session, vendor="tiny")
    vendor.rate_card(price_per_answer="0.10", fees={"minimum_per_invoice": "5.00"})
    vendor.items(1)
    vendor.dispatch()
    vendor.answer_all()
    draft = invoice_request(client, finance, vendor.vendor_id).get_json()
    assert draft["total"] == "5.00"
    assert any("adjustments" in line["description"] for line in draft["lines"])
    assert ledger_total(session, vendor_id=vendor.vendor_id) == Decimal("5.00")
    # Deleting a draft frees its entries; the top-up is not booked twice.
    assert (
        client.delete(f"/api/v1/billing/invoices/{draft['id']}", headers=finance).status_code == 204
    )
    again = invoice_request(client, finance, vendor.vendor_id).get_json()
    assert again["total"] == "5.00"


# --- bonuses -------------------------------------------------------------------------


@pytest.fixture
def paid(monkeypatch):
    calls = []

    def pay_bonus(self, worker_ref, amount, *, reason, token, answer_refs=()):
        calls.append((worker_ref, amount, reason, token))

    monkeypatch.setattr(InternalPoolConnector, "pay_bonus", pay_bonus)
    return calls


def worked_campaign(client, ops, make_key, session, **settings):
    campaign = make_campaign(client, ops, make_key, session, gold_min_answers=2, **settings)
    campaign.import_items(6, gold=4)
    campaign.dispatch()
    campaign.work_until_done(
        [campaign.worker("ann"), campaign.worker("bob")],
        answer_for=lambda slot, item: item.gold_label or "dog",
    )
    return campaign


def test_bonus_is_paid_once_per_key(client, ops, make_key, session, paid, finance):
    campaign = worked_campaign(client, ops, make_key, session)
    worker_id = session.scalar(sa.select(WorkerProject.worker_id).order_by(WorkerProject.id))
    url = f"/api/v1/projects/{campaign.project_id}/bonuses"
    body = {"worker_id": worker_id, "amount": "0.50", "reason": "great work"}
    before = ledger_total(session)

    missing_key = client.post(url, json=body, headers=ops)
    assert (
        missing_key.status_code == 422
        and "client_token" in missing_key.get_json()["error"]["details"]
    )
    first = client.post(url, json=body, headers={**ops, "Idempotency-Key": "bonus-1"})
    assert first.status_code == 201, first.get_json()
    grant = first.get_json()
    assert grant["replayed"] is False and grant["total"] == "0.50"
    assert [b["status"] for b in grant["bonuses"]] == ["paid"]
    retry = client.post(url, json=body, headers={**ops, "Idempotency-Key": "bonus-1"})
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["bonuses"] == grant["bonuses"] and retry.get_json()["replayed"]
    assert len(paid) == 1 and paid[0][1:3] == (Decimal("0.50"), "great work")
    bonus_entries = ledger(session, kind="bonus")
    assert len(bonus_entries) == 1 and bonus_entries[0].worker_id == worker_id
    assert ledger_total(session) == before + Decimal("0.50")

    changed = client.post(
        url, json={**body, "amount": "0.60"}, headers={**ops, "Idempotency-Key": "bonus-1"}
    )
    assert changed.status_code == 409
    by_token = client.post(url, json={**body, "client_token": "tok-2"}, headers=ops)
    assert by_token.status_code == 201 and len(paid) == 2
    assert client.post(url, json={**body, "client_token": "tok-2"}, headers=ops).get_json()[
        "replayed"
    ]
    assert len(paid) == 2
    assert client.post(url, json={**body, "client_token": "x"}, headers=finance).status_code == 403
    listed = client.get(url, headers=finance).get_json()["data"]
    assert [b["idempotency_key"] for b in listed] == ["bonus-1", "tok-2"]


def test_bonus_to_workers_above_a_gold_accuracy(client, ops, make_key, session, paid):
    campaign = worked_campaign(client, ops, make_key, session)
    records = session.scalars(sa.select(WorkerProject).order_by(WorkerProject.id)).all()
    assert all(r.gold_answers >= 2 and r.gold_correct == r.gold_answers for r in records)
    records[1].gold_correct = 0  # bob missed every gold question
    session.commit()
    url = f"/api/v1/projects/{campaign.project_id}/bonuses"
    grant = client.post(
        url,
        json={"min_gold_accuracy": 0.9, "amount": "1.00", "reason": "accuracy"},
        headers={**ops, "Idempotency-Key": "acc"},
    )
    assert grant.status_code == 201, grant.get_json()
    assert [b["worker_id"] for b in grant.get_json()["bonuses"]] == [records[0].worker_id]
    assert [call[0] for call in paid] == ["ann"]
    none = client.post(
        url,
        json={"min_gold_accuracy": 1.0, "min_gold_answers": 1000, "amount": "1.00", "reason": "x"},
        headers={**ops, "Idempotency-Key": "none"},
    )
    assert none.status_code == 422


def test_bonus_over_budget_is_refused_and_unreachable_workforce_retried(
    client, ops, make_key, session, monkeypatch
):
    campaign = worked_campaign(client, ops, make_key, session, budget="2.00")
    state = budget(client, ops, campaign.project_id)
    worker_id = session.scalar(sa.select(WorkerProject.worker_id).order_by(WorkerProject.id))
    url = f"/api/v1/projects/{campaign.project_id}/bonuses"
    too_much = {
        "worker_id": worker_id,
        "amount": str(state["remaining"] + Decimal("0.01")),
        "reason": "x",
    }
    refused = client.post(url, json=too_much, headers={**ops, "Idempotency-Key": "big"})
    assert refused.status_code == 409
    assert refused.get_json()["error"]["details"]["remaining"] == str(state["remaining"])

    calls = []

    def down(self, worker_ref, amount, *, reason, token, answer_refs=()):
        calls.append(token)
        raise WorkforceUnavailableError("payroll is down")

    monkeypatch.setattr(InternalPoolConnector, "pay_bonus", down)
    body = {"worker_id": worker_id, "amount": "0.25", "reason": "x"}
    failed = client.post(url, json=body, headers={**ops, "Idempotency-Key": "k"})
    assert failed.status_code == 502
    held = budget(client, ops, campaign.project_id)
    assert held["reserved"] == state["reserved"] + Decimal("0.25")  # held while pending
    monkeypatch.setattr(
        InternalPoolConnector, "pay_bonus", lambda self, *a, **k: calls.append(k["token"])
    )
    retried = client.post(url, json=body, headers={**ops, "Idempotency-Key": "k"})
    assert retried.status_code == 201 and retried.get_json()["bonuses"][0]["status"] == "paid"
    assert len(set(calls)) == 1 and len(calls) == 2  # the same token both times
    assert len(ledger(session, kind="bonus")) == 1
    final = budget(client, ops, campaign.project_id)
    assert final["committed"] == state["committed"] + Decimal("0.25")
    assert final["reserved"] == state["reserved"]


# --- roles ---------------------------------------------------------------------------


def test_finance_reads_every_report_and_changes_nothing_else(app, client, make_key, ops, session):
    campaign = make_campaign(client, ops, make_key, session)
    finance = make_key("finance")
    for url in (
        "/api/v1/billing/costs",
        "/api/v1/billing/costs?group_by=day&format=csv",
        f"/api/v1/billing/projects/{campaign.project_id}/cost-per-label",
        f"/api/v1/billing/projects/{campaign.project_id}/budget",
        f"/api/v1/billing/workforces/{campaign.workforce_id}/budget",
        f"/api/v1/workforces/{campaign.workforce_id}/rate-cards",
        f"/api/v1/projects/{campaign.project_id}/bonuses",
        "/api/v1/billing/invoices",
    ):
        assert client.get(url, headers=finance).status_code == 200, url
    from tests.orchestrator.api.test_roles import ROUTE_ROLES

    for (method, rule), roles in ROUTE_ROLES.items():
        if method != "GET" and not rule.startswith("/api/v1/billing/invoices"):
            assert "finance" not in roles, (method, rule)
    for role, scope in (("vendor", {"vendor": "acme"}), ("worker", {"worker": "w-9"})):
        headers = make_key(role, **scope)
        for (method, rule), _ in ROUTE_ROLES.items():
            if "/billing/" in rule or "rate-cards" in rule or "bonuses" in rule:
                concrete = rule.replace("<id:project_id>", str(campaign.project_id))
                concrete = concrete.replace("<id:workforce_id>", "1").replace(
                    "<id:invoice_id>", "1"
                )
                response = client.open(concrete, method=method, headers=headers, json={})
                assert response.status_code == 403, (role, method, rule)
