"""Batch deadlines: tell a webhook vendor, once, that a batch is nearly due.

`announce_due_soon` runs as a scheduler job. It finds open batches (published or
in progress) of vendor workforces with webhook hand-off whose `due_at` is still
ahead but within `lead`, and records one `batch.due_soon` webhook for each in the
outbox. The outbox message is the record that the batch was announced: a batch
that has one is skipped. The job runs in one transaction under the scheduler's
job lock (an advisory lock on PostgreSQL, one scheduler process on SQLite), so
two runs never both find a batch unannounced, and a run that dies commits
nothing and leaves the batch to the next run. Exactly one message per batch.
"""

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.models import Batch, OutboxMessage, Workforce
from orchestrator.models.batches import OPEN_BATCH_STATUSES
from orchestrator.services import webhooks

DUE_SOON = "batch.due_soon"


def announce_due_soon(
    session: Session, *, lead: timedelta, now: datetime | None = None
) -> dict[str, int]:
    """Record one `batch.due_soon` webhook for each open batch due within `lead`."""
    now = now or utcnow()
    announced = sa.exists().where(
        OutboxMessage.batch_id == Batch.id, OutboxMessage.event == DUE_SOON
    )
    rows = session.execute(
        sa.select(Batch, Workforce.config)
        .join(Workforce, Workforce.id == Batch.workforce_id)
        .where(
            Workforce.kind == "vendor",
            Workforce.config["handoff"].as_string() == "webhook",
            Batch.status.in_(OPEN_BATCH_STATUSES),
            Batch.due_at > now,
            Batch.due_at <= now + lead,
            ~announced,
        )
        .order_by(Batch.id)
    ).all()
    count = sum(
        webhooks.announce_batch(session, batch, DUE_SOON, config) is not None
        for batch, config in rows
    )
    return {"due_soon": count}
