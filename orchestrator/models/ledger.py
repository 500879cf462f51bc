"""Money records: rate cards, the append-only ledger, invoices."""

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.batches import Assignment
from orchestrator.models.types import BigId, UtcDateTime


class RateCard(Base):
    """A workforce's prices from a start date on; answers keep the card they were accepted under."""

    __tablename__ = "rate_card"
    __table_args__ = (sa.UniqueConstraint("workforce_id", "effective_from"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"), index=True)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime)
    currency: Mapped[str] = mapped_column(sa.String(3))
    price_per_answer_micros: Mapped[int] = mapped_column(sa.BigInteger)
    price_per_item_micros: Mapped[int | None] = mapped_column(sa.BigInteger)
    price_per_gold_answer_micros: Mapped[int | None] = mapped_column(sa.BigInteger)
    gold_billable: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    # Fee rule as data (e.g. {"kind": "mturk", "masters": false} or a vendor percentage).
    fee_rule: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LedgerEntry(Base):
    """One money movement; never updated or deleted, corrected by reversing entries."""

    __tablename__ = "ledger_entry"
    __table_args__ = (sa.Index("ix_ledger_entry_project_kind", "project_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(24))
    amount_micros: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id"))
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("batch.id"))
    workforce_id: Mapped[int | None] = mapped_column(sa.ForeignKey("workforce.id"), index=True)
    vendor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vendor.id"), index=True)
    worker_id: Mapped[int | None] = mapped_column(sa.ForeignKey("worker.id"))
    answer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("answer.id"), index=True)
    rate_card_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rate_card.id"))
    reverses_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ledger_entry.id"))
    # For a reversal, the kind of entry it reverses (reports group reversals with it).
    reverses_kind: Mapped[str | None] = mapped_column(sa.String(24))
    # Money spent on gold questions: the overhead shown apart in cost per label.
    is_gold: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # Makes a repeated write (poll, retry) a no-op instead of a second entry.
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    memo: Mapped[str] = mapped_column(sa.String(500), default="")
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Invoice(Base):
    """What Quorum owes a vendor for a period; immutable once issued."""

    __tablename__ = "invoice"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(40), unique=True)
    vendor_id: Mapped[int] = mapped_column(sa.ForeignKey("vendor.id"), index=True)
    period_start: Mapped[date] = mapped_column(sa.Date)
    period_end: Mapped[date] = mapped_column(sa.Date)
    currency: Mapped[str] = mapped_column(sa.String(3))
    total_micros: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # The exact sum of the billed entries; `total_micros` is it rounded to the cent.
    exact_total_micros: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    group_by: Mapped[str] = mapped_column(sa.String(16), default="batch")
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class InvoiceLine(Base):
    """One line of an invoice (per batch or per project)."""

    __tablename__ = "invoice_line"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        sa.ForeignKey("invoice.id", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(sa.String(500))
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("project.id"))
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("batch.id"))
    quantity: Mapped[int] = mapped_column(sa.Integer, default=0)
    amount_micros: Mapped[int] = mapped_column(sa.BigInteger)
    # The exact sum of the line's entries before rounding to the cent.
    exact_amount_micros: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # Entries from before the period that arrived after their own invoice was issued.
    is_carried_over: Mapped[bool] = mapped_column(sa.Boolean, default=False)


class InvoiceEntry(Base):
    """Which ledger entries an invoice covers; an entry is invoiced at most once."""

    __tablename__ = "invoice_entry"

    invoice_id: Mapped[int] = mapped_column(
        sa.ForeignKey("invoice.id", ondelete="CASCADE"), primary_key=True
    )
    ledger_entry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ledger_entry.id"), primary_key=True, unique=True
    )


class Bonus(Base):
    """One bonus to one worker from one request; held against the budget until it is paid.

    A request (one `Idempotency-Key` or client token) may pay several workers; each gets
    a row with a deterministic `token` that the connector passes on (MTurk's
    UniqueRequestToken), so a retry never pays twice.
    """

    __tablename__ = "bonus"
    __table_args__ = (sa.UniqueConstraint("project_id", "request_key", "worker_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("project.id"))
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"))
    worker_id: Mapped[int] = mapped_column(sa.ForeignKey("worker.id"), index=True)
    request_key: Mapped[str] = mapped_column(sa.String(255))
    # SHA-256 of the request body: the same key with another body is a conflict.
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    amount_micros: Mapped[int] = mapped_column(sa.BigInteger)
    # Amount plus fees: held against the budgets while the bonus is pending.
    cost_micros: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    reason: Mapped[str] = mapped_column(sa.String(500))
    token: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    error: Mapped[str | None] = mapped_column(sa.String(500))
    api_key_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_key.id"))
    # When a payment attempt started; a request that finds a recent one waits (409).
    attempted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# Budgets sum the reservations of a project's open and leased slots; this partial index
# keeps that sum off the full assignment table (see orchestrator.services.budgets).
sa.Index(
    "ix_assignment_reserved_project",
    Assignment.project_id,
    Assignment.reserved_micros,
    postgresql_where=sa.text("status IN ('open', 'leased')"),
    sqlite_where=sa.text("status IN ('open', 'leased')"),
)
