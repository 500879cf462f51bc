"""Vendor webhooks: the events a `handoff: webhook` vendor workforce is told about.

Events (Standard Webhooks payload: `type`, `timestamp`, `data`):

- `batch.published`: a batch is open to the vendor; fetch its tasks from `tasks_url`;
- `batch.cancelled`: the batch's open slots are closed; further answers are refused.
- `batch.due_soon`: an open batch's `due_at` is near (`QUORUM_DUE_SOON_LEAD`, one
  hour by default); sent once per batch (`orchestrator.services.deadlines`).

`data` carries what the vendor API shows of a batch (never which tasks are gold).
Each event goes through the outbox (`orchestrator.services.outbox`) in the caller's
transaction, so it is sent if and only if the change is committed.
"""

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.models import Batch, OutboxMessage, Project
from orchestrator.services import outbox

EVENTS = ("batch.published", "batch.cancelled", "batch.due_soon")


def wants_webhooks(config: Mapping[str, Any]) -> bool:
    """Whether a workforce's connector config asks for webhook hand-off."""
    return config.get("handoff") == "webhook" and bool(config.get("webhook_url"))


def batch_payload(session: Session, batch: Batch, event: str) -> dict[str, Any]:
    """Return the Standard Webhooks payload of a batch event."""
    project = session.get(Project, batch.project_id)
    now = utcnow()
    return {
        "type": event,
        "timestamp": now.isoformat(),
        "data": {
            "batch_id": batch.id,
            "status": batch.status,
            "title": project.name if project else None,
            "task_count": batch.item_count + batch.gold_count,
            "due_at": batch.due_at.isoformat() if batch.due_at else None,
            "tasks_url": f"/api/v1/vendor/batches/{batch.id}/tasks",
        },
    }


def announce_batch(
    session: Session, batch: Batch, event: str, config: Mapping[str, Any]
) -> OutboxMessage | None:
    """Record a batch event for a webhook vendor in the caller's transaction (or do nothing)."""
    if not wants_webhooks(config):
        return None
    return outbox.enqueue(
        session,
        event=event,
        target=str(config["webhook_url"]),
        payload=batch_payload(session, batch, event),
        workforce_id=batch.workforce_id,
        batch_id=batch.id,
    )
