"""A whole MTurk campaign on the local MTurk server: the ledger equals MTurk's debits."""

from decimal import Decimal

import pytest
import sqlalchemy as sa

from billing.money import from_micros
from connectors import mturk
from connectors.base import WorkforceUnavailableError
from connectors.mturk import MTurkConnector
from connectors.mturk_forms import answer_field
from orchestrator import scheduler
from orchestrator.models import (
    Answer,
    Batch,
    Item,
    LedgerEntry,
    MTurkReview,
    Worker,
    WorkerProject,
)
from orchestrator.services import collection, mturk_review
from tests.orchestrator.api.campaign import Campaign
from tests.support.mturk_server import MTurkTestServer, WorkerRefused

GOOD = ["GOOD1", "GOOD2", "GOOD3"]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setattr(mturk, "PAGE", 2)  # every listing of 3 assignments takes two pages
    monkeypatch.setattr(mturk, "_QUALIFICATIONS", {})  # a new server knows no old id
    with MTurkTestServer() as running:
        yield running


def start_campaign(server, client, ops, make_key, session, sessions, *, items, gold, **settings):
    """A project with an MTurk workforce on the test server, its batch published."""
    campaign = Campaign(client, ops, make_key, session, reward="0.50", **settings)
    campaign.sessions = sessions
    response = client.post(
        "/api/v1/workforces",
        json={
            "name": "turk",
            "kind": "mturk",
            "config": {"endpoint_url": server.endpoint_url, "max_attempts": 3},
        },
        headers=ops,
    )
    assert response.status_code == 201, response.get_json()
    campaign.mturk_id = response.get_json()["id"]
    campaign.import_items(items, gold=gold)
    assert campaign.dispatch(campaign.mturk_id).status_code == 201
    assert collection.publish_pending(sessions) == {"published": 1}
    return campaign


@pytest.fixture
def campaign(server, client, ops, make_key, session, sessions):
    return start_campaign(
        server,
        client,
        ops,
        make_key,
        session,
        sessions,
        items=4,
        gold=2,
        overlap=3,
        gold_rate=0.34,
        gold_min_answers=2,
        gold_accuracy_threshold=0.7,
    )


def hits_by_item(session):
    batch = session.scalar(sa.select(Batch))
    session.refresh(batch)
    return {hit["tasks"][0]: hit["hit_id"] for hit in batch.connector_state["hits"]}


def work(server, session, workers, *, wrong_gold=False):
    """Let workers submit to every HIT they may take; gold is 'cat', the rest 'dog'."""
    refused = 0
    items = {str(item.id): item for item in session.scalars(sa.select(Item))}
    for item_ref, hit_id in hits_by_item(session).items():
        gold = items[item_ref].gold_label
        label = ("dog" if wrong_gold else gold) if gold else "dog"
        for worker in workers:
            try:
                server.submit_assignment(hit_id, worker, {answer_field(item_ref): label})
            except WorkerRefused:
                refused += 1
    return refused


def ledger_totals(session, workforce_id):
    rows = session.execute(
        sa.select(LedgerEntry.kind, sa.func.sum(LedgerEntry.amount_micros))
        .where(LedgerEntry.workforce_id == workforce_id)
        .group_by(LedgerEntry.kind)
    ).all()
    return {kind: from_micros(int(total)) for kind, total in rows}


def debit_totals(server):
    totals: dict[str, Decimal] = {}
    for debit in server.debits():
        totals[debit["kind"]] = totals.get(debit["kind"], Decimal(0)) + debit["amount"]
    return totals


def run_jobs(sessions):
    collection.poll_connectors(sessions)
    return mturk_review.review_mturk(sessions)


def test_a_whole_campaign_matches_mturk_to_the_cent(campaign, server, sessions, session, client):
    assert len(server.hits()) == 6  # four items and two gold items, one HIT each
    assert {hit["MaxAssignments"] for hit in server.hits()} == {3}
    # Round 1: a careless worker fails both gold items; a good one answers everything.
    work(server, session, ["BAD"], wrong_gold=True)
    work(server, session, ["GOOD1"])
    first = run_jobs(sessions)
    assert first["workers_blocked"] == 1 and first["rejected"] == 6 and first["approved"] == 6
    # The blocked worker's rejected answers are asked again, gold's like the others' (MTurk
    # must not tell gold by which HITs get more assignments).
    assert first["assignments_added"] == 6
    assert server.blocked_workers() == {"BAD"}
    status = session.scalar(
        sa.select(WorkerProject.status).where(
            WorkerProject.worker_id.in_(sa.text("SELECT id FROM worker WHERE external_id = 'BAD'"))
        )
    )
    assert status == "blocked"
    rejected = [a for a in server.assignments() if a["AssignmentStatus"] == "Rejected"]
    assert {a["WorkerId"] for a in rejected} == {"BAD"}
    assert all("known-answer" in a["RequesterFeedback"] for a in rejected)
    # Gold was scored per worker; the rejected worker's answers are no longer used.
    report = {
        worker["external_id"]: worker
        for worker in client.get(
            f"/api/v1/projects/{campaign.project_id}/workers", headers=campaign.ops
        ).get_json()["data"]
    }
    assert [report["BAD"][key] for key in ("gold_answers", "gold_correct", "status")] == [
        2,
        0,
        "blocked",
    ]
    assert [report["GOOD1"][key] for key in ("gold_answers", "gold_correct")] == [2, 2]
    bad_answers = session.scalars(
        sa.select(Answer.status)
        .join(Worker, Worker.id == Answer.worker_id)
        .where(Worker.external_id == "BAD")
    ).all()
    assert sorted(bad_answers) == ["excluded"] * 6  # gold too: excluded when they were blocked
    # Round 2: the blocked worker is no longer served; the others fill the remaining slots.
    assert work(server, session, ["BAD"], wrong_gold=True) == 6
    work(server, session, GOOD[1:])
    second = run_jobs(sessions)
    assert second["approved"] == 12 and "rejected" not in second
    assert run_jobs(sessions) == {}  # nothing left: polling and reviewing again change nothing
    # Gold was scored; good workers with gold answers get a bonus through the API.
    response = client.post(
        f"/api/v1/projects/{campaign.project_id}/bonuses",
        json={"amount": "0.25", "reason": "accurate work", "min_gold_accuracy": 1.0},
        headers={**campaign.ops, "Idempotency-Key": "bonus-round-1"},
    )
    assert response.status_code == 201, response.get_json()
    paid = {b["worker_ref"] for b in response.get_json()["bonuses"] if b["status"] == "paid"}
    assert paid == {"GOOD1", "GOOD2", "GOOD3"}  # GOOD3 answered the gold asked again
    # The batch completes, and the next review expires and deletes its HITs.
    with sessions.begin() as tx:
        assert scheduler.close_batches(tx)["completed"] == 1
    assert mturk_review.review_mturk(sessions) == {"batches_closed": 1}
    assert {hit["HITStatus"] for hit in server.hits()} == {"Disposed"}
    # Money: the ledger equals what MTurk debited, in total and per kind, to the cent.
    ledger = ledger_totals(session, campaign.mturk_id)
    debits = debit_totals(server)

    assert ledger["reward"] == debits["reward"] == Decimal("9.00")  # 18 approved x 0.50
    assert ledger["platform_fee"] == debits["fee"] + debits["bonus_fee"]
    assert ledger["bonus"] == debits["bonus"] == Decimal("0.75")
    assert sum(ledger.values()) == server.total_debited()


def test_batches_of_other_workforces_show_no_packaging(client, ops, make_key, session):
    campaign = Campaign(client, ops, make_key, session)
    campaign.import_items(2)
    (batch,) = campaign.dispatch().get_json()["data"]
    assert batch["packaging"] is None
    shown = client.get(f"/api/v1/batches/{batch['id']}", headers=ops).get_json()
    assert shown["packaging"] is None


def test_a_crash_between_approval_and_ledger_is_reconciled(
    campaign, server, sessions, session, monkeypatch
):
    work(server, session, ["GOOD1"])
    real = mturk_review.record_approval
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("process killed after ApproveAssignment")
        return real(*args, **kwargs)

    monkeypatch.setattr(mturk_review, "record_approval", crash_once)
    collection.poll_connectors(sessions)
    with pytest.raises(RuntimeError):
        mturk_review.review_mturk(sessions)
    assert session.scalar(sa.select(MTurkReview.status)) == "approving"
    again = mturk_review.review_mturk(sessions)
    assert again["reconciled"] == 1 and again["approved"] == 5
    approvals = [op for op, _ in server.calls if op == "ApproveAssignment"]
    assert len(approvals) == 6  # one per assignment: the crashed one was not approved again
    assert mturk_review.review_mturk(sessions) == {}
    ledger = ledger_totals(session, campaign.mturk_id)
    keys = session.scalars(sa.select(LedgerEntry.idempotency_key)).all()
    assert len(keys) == 12  # reward and fee for each of the six assignments, once
    assert sum(ledger.values()) == server.total_debited() == Decimal("3.60")


def small_campaign(server, client, ops, make_key, session, sessions, **settings):
    """One item and no gold: every HIT of the batch is that item's."""
    return start_campaign(
        server, client, ops, make_key, session, sessions, items=1, gold=0, gold_rate=0, **settings
    )


def item_hits(server):
    return sorted(server.hits(), key=lambda hit: hit["CreationTime"])


@pytest.mark.parametrize(
    ("overlap", "sizes", "topped_up", "costs"),
    [
        # 12 slots: 6 + 6; one more on a 6-assignment HIT stays under 10: extended.
        (12, [6, 6], [7, 6], ("7.20", "8.40", "1.20")),
        # 18 slots: 9 + 9; a tenth would cross the surcharge line: a further HIT of 1.
        (18, [9, 9], [9, 9, 1], ("10.80", "12.60", "1.80")),
    ],
)
def test_a_worker_on_two_sibling_hits_is_paid_once_recorded_and_replaced(
    server, client, ops, make_key, session, sessions, overlap, sizes, topped_up, costs
):
    campaign = small_campaign(server, client, ops, make_key, session, sessions, overlap=overlap)
    # Ops see the packaging and its saving on the batch.
    (shown,) = client.get(
        f"/api/v1/projects/{campaign.project_id}/batches", headers=ops
    ).get_json()["data"]
    cost, unsplit, saving = costs
    assert shown["packaging"] == {
        "hits": 2,
        "cost": cost,
        "cost_without_split": unsplit,
        "saving": saving,
    }
    (item_ref,) = hits_by_item(session)
    first, second = item_hits(server)
    assert [first["MaxAssignments"], second["MaxAssignments"]] == sizes
    per_hit = sizes[0]
    field = {answer_field(item_ref): "dog"}
    for n in range(per_hit):
        server.submit_assignment(first["HITId"], f"A{n}", field)
    # A0 takes the sibling HIT too: MTurk cannot refuse it, the HITs are different.
    duplicate = server.submit_assignment(second["HITId"], "A0", field)
    for n in range(1, per_hit):
        server.submit_assignment(second["HITId"], f"B{n}", field)
    counts = run_jobs(sessions)
    assert counts["approved"] == 2 * per_hit and counts["assignments_added"] == 1
    # Paid (MTurk approved it), recorded as a duplicate, not as a second answer.
    review = session.scalar(sa.select(MTurkReview).where(MTurkReview.assignment_id == duplicate))
    assert (review.status, review.unstored_reason, review.unstored_answers) == (
        "approved",
        "answered_already",
        1,
    )
    assert session.scalar(sa.select(sa.func.count()).select_from(Answer)) == 2 * per_hit - 1
    entries = session.scalars(
        sa.select(LedgerEntry).where(LedgerEntry.memo.like(f"%{duplicate}%"))
    ).all()
    assert {e.kind for e in entries} == {"reward", "platform_fee"}
    assert all(e.answer_id is None and "duplicate" in e.memo for e in entries)
    # The slot the duplicate could not fill is on MTurk again, on the cheap side of 10.
    assert [hit["MaxAssignments"] for hit in item_hits(server)] == topped_up
    assert run_jobs(sessions) == {}  # nothing more to add while the new slot is open
    (open_hit,) = [hit for hit in item_hits(server) if hit["HITStatus"] == "Assignable"]
    server.submit_assignment(open_hit["HITId"], "LATE", field)
    assert run_jobs(sessions)["approved"] == 1
    with sessions.begin() as tx:
        assert scheduler.close_batches(tx)["completed"] == 1
    assert mturk_review.review_mturk(sessions) == {"batches_closed": 1}
    answers = session.scalar(sa.select(sa.func.count()).select_from(Answer))
    assert answers == overlap
    # Money: every approved assignment, the duplicate included, at the fee MTurk took.
    ledger = ledger_totals(session, campaign.mturk_id)
    assert ledger["reward"] == debit_totals(server)["reward"] == Decimal("0.50") * (overlap + 1)
    assert sum(ledger.values()) == server.total_debited()


def budget(client, campaign):
    response = client.get(
        f"/api/v1/billing/projects/{campaign.project_id}/budget", headers=campaign.ops
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return Decimal(body["committed"]), Decimal(body["reserved"])


def test_stored_answers_stay_reserved_until_their_review_is_recorded(
    server, client, ops, make_key, session, sessions
):
    # Room for one item's three slots at 0.60 (0.50 + MTurk's 20%), not for two.
    campaign = Campaign(
        client, ops, make_key, session, reward="0.50", overlap=3, gold_rate=0, budget="3.00"
    )
    response = client.post(
        "/api/v1/workforces",
        json={"name": "turk", "kind": "mturk", "config": {"endpoint_url": server.endpoint_url}},
        headers=ops,
    )
    turk = response.get_json()["id"]
    campaign.import_items(2)
    assert campaign.dispatch(turk, max_items=1).status_code == 201
    collection.publish_pending(sessions)
    assert budget(client, campaign) == (Decimal("0.00"), Decimal("1.80"))
    (hit,) = server.hits()
    (item_ref,) = hits_by_item(session)
    for worker in ("W1", "W2", "W3"):
        server.submit_assignment(hit["HITId"], worker, {answer_field(item_ref): "dog"})
    assert collection.poll_connectors(sessions)["stored"] == 3
    # Stored, not yet approved: not on the ledger, so still reserved.
    assert budget(client, campaign) == (Decimal("0.00"), Decimal("1.80"))
    refused = campaign.dispatch(turk)
    assert refused.status_code == 409, refused.get_json()
    assert mturk_review.review_mturk(sessions)["approved"] == 3
    assert budget(client, campaign) == (Decimal("1.80"), Decimal("0.00"))
    assert campaign.dispatch(turk).status_code == 409
    assert server.total_debited() == Decimal("1.80")


def test_auto_approved_work_reaches_the_ledger(campaign, server, sessions, session):
    work(server, session, ["GOOD1"])
    server.advance(3 * 86_400 + 1)  # past the HIT type's auto-approval delay, unreviewed
    assert len([d for d in server.debits() if d["kind"] == "reward"]) == 6
    counts = run_jobs(sessions)
    assert counts["auto_approved"] == 6 and "approved" not in counts
    assert not [op for op, _ in server.calls if op == "ApproveAssignment"]
    assert run_jobs(sessions) == {}
    ledger = ledger_totals(session, campaign.mturk_id)
    assert sum(ledger.values()) == server.total_debited() == Decimal("3.60")


def test_cancelling_calls_mturk_outside_the_request(campaign, server, sessions, client):
    batch_id = client.get(
        f"/api/v1/projects/{campaign.project_id}/batches", headers=campaign.ops
    ).get_json()["data"][0]["id"]
    before = len(server.calls)
    response = client.post(f"/api/v1/batches/{batch_id}/cancel", headers=campaign.ops)
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert len(server.calls) == before  # nothing called inside the request's transaction
    assert mturk_review.review_mturk(sessions) == {"batches_closed": 1}
    assert {hit["HITStatus"] for hit in server.hits()} == {"Disposed"}


def test_a_rejection_overtaken_by_auto_approval_is_recorded_as_paid(
    campaign, server, sessions, session, monkeypatch
):
    work(server, session, ["BAD"], wrong_gold=True)
    collection.poll_connectors(sessions)  # stored; two failed gold answers block BAD
    real = MTurkConnector.reject

    def unreachable(self, assignment_id, feedback):
        raise WorkforceUnavailableError("MTurk did not answer")

    monkeypatch.setattr(MTurkConnector, "reject", unreachable)
    assert mturk_review.review_mturk(sessions)["unavailable"] == 1
    assert session.scalar(sa.select(MTurkReview.status)) == "rejecting"
    monkeypatch.setattr(MTurkConnector, "reject", real)
    server.advance(3 * 86_400 + 1)  # MTurk approves everything by itself meanwhile
    counts = run_jobs(sessions)
    assert counts["reconciled"] == 1 and counts["auto_approved"] == 5
    assert set(session.scalars(sa.select(MTurkReview.status))) == {"approved"}
    ledger = ledger_totals(session, campaign.mturk_id)
    assert sum(ledger.values()) == server.total_debited() == Decimal("3.60")
