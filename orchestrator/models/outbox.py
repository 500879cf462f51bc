"""The transactional outbox: messages to send outside, and the log of every try.

A message is written in the same transaction as the state change that causes it
(a batch published or cancelled), so it exists exactly when the change does. The
sender (`orchestrator.services.outbox.deliver_due`) claims due messages, commits,
sends outside any transaction, then records the result in a second transaction.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime

# pending: waiting for next_attempt_at; sending: claimed by a sender until next_attempt_at
# (a claim that outlives it is retried); delivered; failed: attempts used up or refused;
# disabled: the endpoint answered 410 Gone, so nothing more goes to that target.
OUTBOX_STATUSES = ("pending", "sending", "delivered", "failed", "disabled")
DUE_STATUSES = ("pending", "sending")
# The outcome of one try: sending (no result recorded yet; a sender that stops leaves it),
# delivered, retry (failed, another try is scheduled), failed, disabled, abandoned
# (its sender stopped between the send and the record; the message was claimed again).
ATTEMPT_OUTCOMES = ("sending", "delivered", "retry", "failed", "disabled", "abandoned")


class OutboxMessage(Base):
    """One message to send outside: a signed webhook to a vendor's endpoint."""

    __tablename__ = "outbox_message"
    __table_args__ = (sa.Index("ix_outbox_message_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Stable across retries and replays: the `webhook-id` receivers deduplicate on.
    message_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="webhook")
    event: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(2000))
    workforce_id: Mapped[int | None] = mapped_column(sa.ForeignKey("workforce.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("batch.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DeliveryAttempt(Base):
    """One try at sending a message: when, what came back, how long it took."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (sa.UniqueConstraint("outbox_message_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outbox_message_id: Mapped[int] = mapped_column(
        sa.ForeignKey("outbox_message.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(sa.Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(sa.String(16), default="sending")
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.String(500))
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
