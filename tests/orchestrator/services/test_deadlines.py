"""`batch.due_soon`: one signed webhook per open batch nearing its due time, once."""

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.webhooks import verify_signature
from orchestrator import scheduler
from orchestrator.db import utcnow
from orchestrator.models import Batch, OutboxMessage
from orchestrator.services import deadlines
from orchestrator.settings import Settings
from tests.orchestrator.test_webhooks import SECRET, Clock, Receiver, WebhookCampaign, deliver


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def campaign(client, ops, make_key, session):
    campaign = WebhookCampaign(client, ops, make_key, session, overlap=1, gold_rate=0.0)
    campaign.import_items(4)
    return campaign


def due_soon_messages(session):
    session.expire_all()
    return session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.event == "batch.due_soon")
        .order_by(OutboxMessage.id)
    ).all()


def set_batch(session, batch_id, **values):
    session.execute(sa.update(Batch).where(Batch.id == batch_id).values(**values))
    session.commit()


def test_due_soon_fires_once_per_open_batch_nearing_its_due_time(
    campaign,
    session,
    sessions,
    receiver,
    clock,  # noqa: F811 (fixture)
):
    workforce_id = campaign.webhook_workforce(receiver.url)
    soon, far, done, overdue = campaign.batches(workforce_id, batch_size=1)
    now = utcnow()
    set_batch(session, soon, due_at=now + timedelta(minutes=30))
    set_batch(session, far, due_at=now + timedelta(hours=5))
    set_batch(session, done, due_at=now + timedelta(minutes=30), status="completed")
    set_batch(session, overdue, due_at=now - timedelta(minutes=1))
    [job] = [j for j in scheduler.default_jobs(Settings()) if j.name == "announce_due_soon"]

    first = scheduler.run_job(sessions, job, now=1000 * job.seconds)
    assert first["due_soon"] == 1
    second = scheduler.run_job(sessions, job, now=1001 * job.seconds)
    assert second["due_soon"] == 0
    [message] = due_soon_messages(session)
    assert (message.batch_id, message.workforce_id, message.target) == (
        soon,
        workforce_id,
        receiver.url,
    )

    # The webhook goes out signed, like every other event, and only once.
    deliver(sessions, clock)
    deliver(sessions, clock)
    [(headers, body)] = [
        (h, b) for h, b in receiver.requests if json.loads(b)["type"] == "batch.due_soon"
    ]
    verify_signature(SECRET, headers, body, now=int(headers["webhook-timestamp"]))
    data = json.loads(body)["data"]
    assert data["batch_id"] == soon and data["status"] == "published"
    assert data["due_at"] == session.get(Batch, soon).due_at.isoformat()

    # Later, the far batch comes within the lead time: it gets its one message too.
    later = now + timedelta(hours=4, minutes=30)
    with sessions.begin() as s:
        assert deadlines.announce_due_soon(s, lead=timedelta(hours=1), now=later) == {"due_soon": 1}
    with sessions.begin() as s:
        assert deadlines.announce_due_soon(s, lead=timedelta(hours=1), now=later) == {"due_soon": 0}
    assert [m.batch_id for m in due_soon_messages(session)] == [soon, far]


def test_pull_vendors_and_internal_batches_get_no_due_soon(campaign, session, sessions):
    pull = campaign.client.post(
        "/api/v1/workforces",
        json={"name": "pull-wf", "kind": "vendor", "vendor": "pull"},
        headers=campaign.ops,
    ).get_json()["id"]
    card = campaign.client.post(
        f"/api/v1/workforces/{pull}/rate-cards",
        json={"price_per_answer": "0.10"},
        headers=campaign.ops,
    )
    assert card.status_code == 201, card.get_json()
    due = (utcnow() + timedelta(minutes=10)).isoformat()
    [pulled] = campaign.batches(pull, max_items=2, due_at=due)
    [internal] = campaign.batches(campaign.workforce_id, due_at=due)
    with sessions.begin() as s:
        assert deadlines.announce_due_soon(s, lead=timedelta(hours=1)) == {"due_soon": 0}
    assert due_soon_messages(session) == []
    assert session.get(Batch, pulled).status == session.get(Batch, internal).status == "published"


def test_lead_time_is_a_setting():
    assert Settings().due_soon_lead == 3600
    assert Settings.from_env({"QUORUM_DUE_SOON_LEAD": "15m"}).due_soon_lead == 900
    assert Settings.from_env({"QUORUM_DUE_SOON_LEAD": "7200"}).due_soon_lead == 7200
    with pytest.raises(ValueError, match="not a duration"):
        Settings.from_env({"QUORUM_DUE_SOON_LEAD": "soon"})
