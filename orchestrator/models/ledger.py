"""Money records: rate cards, the append-only ledger, invoices."""

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
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


class InvoiceEntry(Base):
    """Which ledger entries an invoice covers; an entry is invoiced at most once."""

    __tablename__ = "invoice_entry"

    invoice_id: Mapped[int] = mapped_column(
        sa.ForeignKey("invoice.id", ondelete="CASCADE"), primary_key=True
    )
    ledger_entry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ledger_entry.id"), primary_key=True, unique=True
    )
