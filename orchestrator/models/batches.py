"""Batches sent to a workforce, and the assignment slots inside them."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime

BATCH_STATUSES = ("created", "published", "in_progress", "completed", "cancelled")
# open: out with the workforce, taking answers; closed: ended, for good.
OPEN_BATCH_STATUSES = ("published", "in_progress")
CLOSED_BATCH_STATUSES = ("completed", "cancelled")
# open: waiting for a worker; leased: held by one; answered; expired/released: a lease that
# ended without an answer (a fresh open row replaces it, so history keeps who saw what);
# excluded: its answer was excluded (a fresh open row reopens the slot); cancelled.
ASSIGNMENT_STATUSES = ("open", "leased", "answered", "expired", "released", "excluded", "cancelled")
LIVE_STATUSES = ("open", "leased", "answered")


class Batch(Base):
    """A set of items sent to one workforce, with the gold mixed in."""

    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="created", index=True)
    # The connector's own reference (HIT type id, vendor batch id, ...).
    external_ref: Mapped[str | None] = mapped_column(sa.String(255))
    connector_state: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    item_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    gold_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    slot_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    reserved_micros: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class BatchItem(Base):
    """Membership of an item in a batch; `is_gold` marks the honeypots mixed in."""

    __tablename__ = "batch_item"
    __table_args__ = (sa.UniqueConstraint("batch_id", "item_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batch.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("item.id", ondelete="CASCADE"), index=True)
    is_gold: Mapped[bool] = mapped_column(sa.Boolean, default=False)


class Assignment(Base):
    """One slot: one answer wanted for one item, leased to at most one worker at a time."""

    __tablename__ = "assignment"
    __table_args__ = (
        # The hand-out queue: open slots of a workforce, oldest batch first, in id order.
        sa.Index(
            "ix_assignment_open_queue",
            "workforce_id",
            "batch_id",
            "id",
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        ),
        sa.Index("ix_assignment_item_worker", "item_id", "worker_id"),
        sa.Index("ix_assignment_item_status", "item_id", "status"),
        sa.Index("ix_assignment_lease_expiry", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("batch.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("item.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("project.id", ondelete="CASCADE"))
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"))
    is_gold: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    worker_id: Mapped[int | None] = mapped_column(sa.ForeignKey("worker.id"), index=True)
    # Opaque token naming the current lease; a new lease gets a new token.
    lease_token: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    leased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Money held against the budget while the slot is open or leased.
    reserved_micros: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    external_ref: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
