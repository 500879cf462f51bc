"""Vendor webhooks through the outbox, against a real local HTTP receiver.

The sender runs as the scheduler does (`outbox.deliver_due`), with a clock the tests
advance, so retry times are exact and no test sleeps.
"""

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa

from connectors import webhooks
from connectors.webhooks import verify_signature
from orchestrator import scheduler
from orchestrator.models import DeliveryAttempt, OutboxMessage
from orchestrator.services import outbox
from orchestrator.settings import Settings
from tests.orchestrator.api.campaign import Campaign

SECRET_ENV = "QUORUM_TEST_WEBHOOK_SECRET"
SECRET = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHMtMTIzNDU2Nzg="
ENVIRON = {SECRET_ENV: SECRET}
POLICY = outbox.RetryPolicy(max_attempts=5, base_seconds=10, claim_seconds=60)


class Receiver:
    """A vendor's webhook endpoint: answers from a script, records every request."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)  # answered in order, then 200
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.requests.append((headers, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/quorum"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def ids(self):
        return [headers["webhook-id"] for headers, _ in self.requests]

    def events(self):
        return [json.loads(body)["type"] for _, body in self.requests]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = datetime.now(UTC) + timedelta(seconds=1)  # messages made now are due

    def __call__(self):
        return self.now

    def advance_to(self, when):
        self.now = max(self.now, when)


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def clock():
    return Clock()


class WebhookCampaign(Campaign):
    def webhook_workforce(self, url, name="acme-wf"):
        return self.vendor_workforce(
            name.removesuffix("-wf"),
            name=name,
            config={"handoff": "webhook", "webhook_url": url, "webhook_secret_env": SECRET_ENV},
        )

    def batches(self, workforce_id, **options):
        response = self.dispatch(workforce_id, **options)
        assert response.status_code == 201, response.get_json()
        return [batch["id"] for batch in response.get_json()["data"]]

    def deliveries(self, workforce_id):
        response = self.client.get(
            f"/api/v1/workforces/{workforce_id}/deliveries", headers=self.ops
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]


@pytest.fixture
def campaign(client, ops, make_key, session):
    campaign = WebhookCampaign(client, ops, make_key, session, overlap=2, gold_rate=0.0)
    campaign.import_items(4)
    return campaign


def deliver(sessions, clock, **options):
    return outbox.deliver_due(
        sessions, policy=POLICY, clock=clock, environ=ENVIRON, rng=random.Random(7), **options
    )


def message(session, message_pk):
    session.expire_all()
    return session.get(OutboxMessage, message_pk)


def test_failed_deliveries_retry_with_growing_delays_until_delivered_once(
    campaign, session, sessions, clock, receiver
):
    receiver.statuses = [500, 503, 500]
    workforce_id = campaign.webhook_workforce(receiver.url)
    [batch_id] = campaign.batches(workforce_id)
    # Recorded in the dispatch's transaction; nothing is sent before the sender runs.
    [pending] = session.scalars(sa.select(OutboxMessage)).all()
    assert (pending.event, pending.status, pending.batch_id) == (
        "batch.published",
        "pending",
        batch_id,
    )
    assert receiver.requests == []

    delays = []
    for expected in ("retried", "retried", "retried", "delivered"):
        sent_at = clock()
        assert deliver(sessions, clock)[expected] == 1
        assert deliver(sessions, clock)["claimed"] == 0  # not due again yet
        row = message(session, pending.id)
        if expected == "retried":
            delays.append((row.next_attempt_at - sent_at).total_seconds())
            clock.advance_to(row.next_attempt_at)
    assert delays == sorted(delays) and len(set(delays)) == 3, delays
    assert 5 <= delays[0] <= 10 and 20 <= delays[2] <= 40  # 10 s doubling, equal jitter

    row = message(session, pending.id)
    assert (row.status, row.attempts, row.delivered_at) == ("delivered", 4, clock())
    # Every try carried the same webhook-id and a valid signature over its own timestamp.
    assert receiver.ids() == [row.message_id] * 4
    for headers, body in receiver.requests:
        ts = int(headers["webhook-timestamp"])
        verify_signature(SECRET, headers, body, now=ts)
        assert json.loads(body)["data"]["batch_id"] == batch_id

    # Nothing is delivered twice in a normal run, however often the sender runs.
    clock.advance_to(clock() + timedelta(days=2))
    assert deliver(sessions, clock)["claimed"] == 0
    assert len(receiver.requests) == 4

    # The delivery log shows every try.
    [delivery] = campaign.deliveries(workforce_id)
    assert delivery["message_id"] == row.message_id and delivery["status"] == "delivered"
    assert [t["outcome"] for t in delivery["tries"]] == ["retry", "retry", "retry", "delivered"]
    assert [t["status_code"] for t in delivery["tries"]] == [500, 503, 500, 200]
    assert all(t["duration_ms"] is not None for t in delivery["tries"])

    # Cancelling the batch announces it too, as a new message.
    cancel = campaign.client.post(f"/api/v1/batches/{batch_id}/cancel", headers=campaign.ops)
    assert cancel.status_code == 200, cancel.get_json()
    assert deliver(sessions, clock)["delivered"] == 1
    assert receiver.events() == ["batch.published"] * 4 + ["batch.cancelled"]
    assert len(set(receiver.ids())) == 2


def test_gone_disables_the_endpoint_until_a_replay_succeeds(
    campaign, session, sessions, clock, receiver
):
    receiver.statuses = [410]
    workforce_id = campaign.webhook_workforce(receiver.url)
    first, second = campaign.batches(workforce_id, batch_size=2)
    assert deliver(sessions, clock, limit=1) == {
        "claimed": 1,
        "delivered": 0,
        "retried": 0,
        "failed": 0,
        "disabled": 1,
    }
    session.expire_all()
    rows = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [r.status for r in rows] == ["disabled", "disabled"]
    assert all("410 Gone" in r.last_error for r in rows)
    assert deliver(sessions, clock)["claimed"] == 0
    assert len(receiver.requests) == 1  # the second message was never sent

    # A later event for the disabled endpoint is recorded, already disabled.
    campaign.client.post(f"/api/v1/batches/{first}/cancel", headers=campaign.ops)
    session.expire_all()
    assert session.scalars(
        sa.select(OutboxMessage.status).where(OutboxMessage.event == "batch.cancelled")
    ).all() == ["disabled"]

    # Ops replays one: it goes out with its own webhook-id, and the endpoint is live again.
    replay = campaign.client.post(
        f"/api/v1/workforces/{workforce_id}/deliveries/{rows[1].id}/replay", headers=campaign.ops
    )
    assert replay.status_code == 202, replay.get_json()
    assert replay.get_json()["status"] == "pending"
    assert deliver(sessions, clock)["delivered"] == 1
    assert receiver.ids()[-1] == rows[1].message_id
    campaign.client.post(f"/api/v1/batches/{second}/cancel", headers=campaign.ops)
    assert deliver(sessions, clock)["delivered"] == 1
    assert receiver.events()[-1] == "batch.cancelled"


def test_a_crash_between_send_and_record_resends_with_the_same_webhook_id(
    campaign, session, sessions, clock, receiver
):
    workforce_id = campaign.webhook_workforce(receiver.url)
    campaign.batches(workforce_id)

    def send_then_crash(url, headers, body):
        webhooks.post(url, headers, body)
        raise RuntimeError("killed after the send")

    with pytest.raises(RuntimeError, match="killed"):
        deliver(sessions, clock, post=send_then_crash)
    [row] = session.scalars(sa.select(OutboxMessage)).all()
    assert message(session, row.id).status == "sending"
    assert deliver(sessions, clock)["claimed"] == 0  # the claim still stands

    clock.advance_to(clock() + timedelta(seconds=POLICY.claim_seconds + 1))
    assert deliver(sessions, clock)["delivered"] == 1
    assert receiver.ids() == [row.message_id, row.message_id]  # receivers dedupe on it
    tries = session.scalars(sa.select(DeliveryAttempt).order_by(DeliveryAttempt.attempt)).all()
    assert [t.outcome for t in tries] == ["abandoned", "delivered"]
    assert "same webhook-id" in tries[0].error
    assert message(session, row.id).status == "delivered"


def test_attempts_run_out_and_a_missing_secret_is_a_clear_error(
    campaign, session, sessions, clock, receiver
):
    workforce_id = campaign.webhook_workforce(receiver.url)
    campaign.batches(workforce_id)
    [row] = session.scalars(sa.select(OutboxMessage)).all()
    for _ in range(POLICY.max_attempts):
        outbox.deliver_due(sessions, policy=POLICY, clock=clock, environ={})
        clock.advance_to(message(session, row.id).next_attempt_at)
    row = message(session, row.id)
    assert row.status == "failed" and row.attempts == POLICY.max_attempts
    assert f"gave up after {POLICY.max_attempts} attempts" in row.last_error
    assert SECRET_ENV in row.last_error and receiver.requests == []


def test_replay_is_scoped_to_the_workforce_and_refused_while_sending(
    campaign, session, sessions, clock, receiver
):
    workforce_id = campaign.webhook_workforce(receiver.url)
    other_id = campaign.webhook_workforce(receiver.url, name="other-wf")
    campaign.batches(workforce_id)
    [row] = session.scalars(sa.select(OutboxMessage)).all()
    url = f"/api/v1/workforces/{other_id}/deliveries/{row.id}/replay"
    assert campaign.client.post(url, headers=campaign.ops).status_code == 404
    assert campaign.deliveries(other_id) == []
    with sessions.begin() as s:
        outbox.claim_due(s, now=outbox.utcnow(), policy=POLICY)
    url = f"/api/v1/workforces/{workforce_id}/deliveries/{row.id}/replay"
    response = campaign.client.post(url, headers=campaign.ops)
    assert response.status_code == 409, response.get_json()


def test_scheduler_job_sends_due_webhooks(campaign, sessions, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    workforce_id = campaign.webhook_workforce(receiver.url)
    campaign.batches(workforce_id)
    [job] = [j for j in scheduler.default_jobs(Settings()) if j.name == "deliver_outbox"]
    assert job.seconds == Settings().outbox_interval == 10
    assert Settings.from_env({"QUORUM_OUTBOX_INTERVAL": "3"}).outbox_interval == 3
    ran = scheduler.run_job(sessions, job)
    assert ran["claimed"] == 1 and ran["delivered"] == 1
    assert len(receiver.requests) == 1


def test_a_message_whose_sender_keeps_dying_fails_after_its_attempts(
    campaign, session, sessions, clock, receiver
):
    workforce_id = campaign.webhook_workforce(receiver.url)
    campaign.batches(workforce_id)
    policy = outbox.RetryPolicy(max_attempts=1, claim_seconds=60)

    def crash(url, headers, body):
        raise RuntimeError("killed before the send")

    with pytest.raises(RuntimeError):
        outbox.deliver_due(sessions, policy=policy, clock=clock, environ=ENVIRON, post=crash)
    clock.advance_to(clock() + timedelta(seconds=61))
    assert outbox.deliver_due(sessions, policy=policy, clock=clock, environ=ENVIRON)["claimed"] == 0
    [row] = session.scalars(sa.select(OutboxMessage)).all()
    row = message(session, row.id)
    assert row.status == "failed" and "gave up after 1 attempts" in row.last_error
    assert session.scalars(sa.select(DeliveryAttempt.outcome)).all() == ["abandoned"]
    assert receiver.requests == []
