"""Vendor invoices: drafts built from the uninvoiced ledger, issued once and never changed.

billing.invoices builds the invoice (lines rounded so they add up to the total);
this module chooses the entries, stores the invoice with its lines and the ids of
the entries it bills (`invoice_entry`, where an entry appears at most once), and
turns a stored invoice back into billing's for CSV and HTML.

A vendor has at most one draft at a time; its entries are held by it until it is
issued or deleted. An issued invoice never changes: entries that arrive later for
its period (a late answer, a reversal) are not on it, so the vendor's next invoice
bills them on lines marked "earlier period".
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing import invoices as billing_invoices
from billing.errors import InvoiceImmutableError
from billing.fees import VendorContract
from billing.money import from_micros, to_micros
from orchestrator.db import utcnow
from orchestrator.errors import ConflictError, InvalidInputError, NotFoundError
from orchestrator.models import Invoice, InvoiceEntry, InvoiceLine, LedgerEntry, Vendor, Workforce
from orchestrator.services import ledger
from orchestrator.services.rate_cards import (
    CARD_COLUMNS,
    CARD_TABLE,
    card_from_row,
    fee_rule_for,
    latest_card_id,
)

L = LedgerEntry.__table__


@dataclass(frozen=True)
class StoredInvoice:
    """An invoice row with its lines, as the API shows it."""

    invoice: Invoice
    vendor_name: str
    lines: list[InvoiceLine]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.invoice, name)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def get_vendor(session: Session, vendor_id: int) -> Vendor:
    """Return a vendor or raise NotFoundError."""
    vendor = session.get(Vendor, vendor_id)
    if vendor is None:
        raise NotFoundError(f"vendor {vendor_id} not found")
    return vendor


def _uninvoiced(session: Session, vendor_id: int, end: datetime) -> list[Any]:
    billed = sa.select(InvoiceEntry.ledger_entry_id).where(InvoiceEntry.ledger_entry_id == L.c.id)
    return ledger.load_entries(
        session,
        sa.and_(L.c.vendor_id == vendor_id, L.c.occurred_at < end, ~sa.exists(billed)),
    )


def _contract(session: Session, vendor_id: int, at: datetime) -> VendorContract | None:
    """The vendor's contract in force at `at` with the highest invoice minimum, if any."""
    rows = session.execute(
        sa.select(*CARD_COLUMNS)
        .select_from(Workforce)
        .join(CARD_TABLE, CARD_TABLE.c.id == latest_card_id(Workforce.id, at))
        .where(Workforce.vendor_id == vendor_id, Workforce.kind == "vendor")
    ).all()
    contracts = []
    for row in rows:
        card = card_from_row(row)
        assert card is not None
        rule = fee_rule_for("vendor", card.fee_rule, currency=card.currency, overlap=1)
        assert isinstance(rule, VendorContract)
        contracts.append(rule)
    return max(contracts, key=lambda rule: rule.minimum_per_invoice, default=None)


def create_invoice(
    session: Session,
    *,
    vendor_id: int,
    period_start: date,
    period_end: date,
    group_by: str = "batch",
    number: str | None = None,
) -> StoredInvoice:
    """Build and store a draft invoice of a vendor's uninvoiced entries before `period_end`.

    `period_end` is exclusive (UTC days). The vendor's contract minimum, if any, is
    booked as an adjustment entry inside the period before the draft is built.
    """
    vendor = get_vendor(session, vendor_id)
    session.execute(sa.select(Vendor.id).where(Vendor.id == vendor.id).with_for_update())
    draft = session.scalar(
        sa.select(Invoice.number).where(Invoice.vendor_id == vendor.id, Invoice.status == "draft")
    )
    if draft is not None:
        raise ConflictError(
            f"vendor {vendor.name} has draft invoice {draft}; issue or delete it first",
            details={"vendor_id": [f"draft {draft} exists"]},
        )
    start, end = _start_of(period_start), _start_of(period_end)
    if end <= start:
        raise InvalidInputError(
            "period_end must be after period_start (it is exclusive)",
            details={"period_end": ["must be after period_start"]},
        )
    entries = _uninvoiced(session, vendor.id, end)
    if not entries:
        raise InvalidInputError(
            f"nothing to invoice: vendor {vendor.name} has no uninvoiced entries before "
            f"{period_end.isoformat()}",
            details={"period_end": ["no uninvoiced ledger entries before it"]},
        )
    number = number or _next_number(session, vendor.id, period_start)
    invoice = _build(entries, vendor, start, end, number, group_by)
    contract = _contract(session, vendor.id, end - timedelta(microseconds=1))
    # A zero minimum means none: it must not turn a credit note into a zero invoice.
    if contract and contract.minimum_per_invoice > 0 and contract.currency == invoice.currency:
        moment = min(max(utcnow(), start), end - timedelta(microseconds=1))
        topup = billing_invoices.minimum_topup_entry(invoice, contract, occurred_at=moment)
        if topup is not None:
            ledger.write_entries(session, [(topup, f"invoice-minimum:{number}")], None)
            invoice = _build(
                _uninvoiced(session, vendor.id, end), vendor, start, end, number, group_by
            )
    return _store(session, invoice, vendor)


def _build(
    entries: Sequence[Any],
    vendor: Vendor,
    start: datetime,
    end: datetime,
    number: str,
    group_by: str,
) -> billing_invoices.Invoice:
    return billing_invoices.build_invoice(
        entries,
        vendor=vendor.id,
        period_start=start,
        period_end=end,
        number=number,
        group_by="project" if group_by == "project" else "batch",
        vendor_name=vendor.name,
    )


def _next_number(session: Session, vendor_id: int, period_start: date) -> str:
    count = session.scalar(sa.select(sa.func.count()).where(Invoice.vendor_id == vendor_id)) or 0
    return f"INV-{vendor_id}-{period_start:%Y%m%d}-{count + 1}"


def _store(session: Session, invoice: billing_invoices.Invoice, vendor: Vendor) -> StoredInvoice:
    if session.scalar(sa.select(Invoice.id).where(Invoice.number == invoice.number)) is not None:
        raise ConflictError(
            f"invoice number {invoice.number} is taken", details={"number": ["taken"]}
        )
    row = Invoice(
        number=invoice.number,
        vendor_id=vendor.id,
        period_start=invoice.period_start.date(),
        period_end=invoice.period_end.date(),
        currency=invoice.currency,
        total_micros=to_micros(invoice.total),
        exact_total_micros=to_micros(invoice.exact_total),
        group_by=invoice.group_by,
        status=invoice.status.value,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    lines = [
        InvoiceLine(
            invoice_id=row.id,
            description=line.description[:500],
            project_id=line.project_id,
            batch_id=line.batch_id,
            quantity=line.quantity,
            amount_micros=to_micros(line.amount),
            exact_amount_micros=to_micros(line.exact_amount),
            is_carried_over=line.is_carried_over,
        )
        for line in invoice.lines
    ]
    session.add_all(lines)
    if invoice.entry_ids:
        session.execute(
            sa.insert(InvoiceEntry),
            [{"invoice_id": row.id, "ledger_entry_id": entry_id} for entry_id in invoice.entry_ids],
        )
    session.flush()
    return StoredInvoice(row, vendor.name, lines)


def _load(session: Session, invoice: Invoice) -> StoredInvoice:
    lines = list(
        session.scalars(
            sa.select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice.id)
            .order_by(InvoiceLine.id)
        )
    )
    name = session.scalar(sa.select(Vendor.name).where(Vendor.id == invoice.vendor_id)) or ""
    return StoredInvoice(invoice, name, lines)


def get_invoice(session: Session, invoice_id: int, *, for_update: bool = False) -> StoredInvoice:
    """Return an invoice with its lines or raise NotFoundError."""
    query = sa.select(Invoice).where(Invoice.id == invoice_id)
    if for_update:
        query = query.with_for_update()
    invoice = session.scalar(query)
    if invoice is None:
        raise NotFoundError(f"invoice {invoice_id} not found")
    return _load(session, invoice)


def list_invoices(
    session: Session,
    *,
    vendor_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[StoredInvoice], int]:
    """Return one page of invoices (newest first) and the total count."""
    query = sa.select(Invoice)
    if vendor_id is not None:
        query = query.where(Invoice.vendor_id == vendor_id)
    if status is not None:
        query = query.where(Invoice.status == status)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    page = session.scalars(query.order_by(Invoice.id.desc()).limit(limit).offset(offset))
    return [_load(session, invoice) for invoice in page], total


def issue_invoice(session: Session, invoice_id: int) -> StoredInvoice:
    """Issue a draft invoice; from then on it never changes (409 if already issued)."""
    stored = get_invoice(session, invoice_id, for_update=True)
    issued = billing_invoices.issue_invoice(to_billing(stored), issued_at=utcnow())
    stored.invoice.status = issued.status.value
    stored.invoice.issued_at = issued.issued_at
    session.flush()
    return stored


def delete_invoice(session: Session, invoice_id: int) -> None:
    """Delete a draft invoice, freeing its entries for the next one; issued ones stay."""
    stored = get_invoice(session, invoice_id, for_update=True)
    if stored.invoice.status != billing_invoices.InvoiceStatus.DRAFT.value:
        raise InvoiceImmutableError(stored.invoice.number)
    session.execute(sa.delete(InvoiceEntry).where(InvoiceEntry.invoice_id == stored.invoice.id))
    session.execute(sa.delete(InvoiceLine).where(InvoiceLine.invoice_id == stored.invoice.id))
    session.delete(stored.invoice)
    session.flush()


def entry_ids(session: Session, invoice_id: int) -> list[int]:
    """Return the ids of the ledger entries an invoice bills, ascending."""
    return list(
        session.scalars(
            sa.select(InvoiceEntry.ledger_entry_id)
            .where(InvoiceEntry.invoice_id == invoice_id)
            .order_by(InvoiceEntry.ledger_entry_id)
        )
    )


def to_billing(stored: StoredInvoice) -> billing_invoices.Invoice:
    """Turn a stored invoice back into billing's, for issuing, CSV and HTML."""
    invoice = stored.invoice
    return billing_invoices.Invoice(
        number=invoice.number,
        vendor_id=invoice.vendor_id,
        vendor_name=stored.vendor_name,
        period_start=_start_of(invoice.period_start),
        period_end=_start_of(invoice.period_end),
        group_by="project" if invoice.group_by == "project" else "batch",
        currency=invoice.currency,
        lines=tuple(
            billing_invoices.InvoiceLine(
                description=line.description,
                project_id=line.project_id,
                batch_id=line.batch_id,
                quantity=line.quantity,
                amount=from_micros(line.amount_micros),
                exact_amount=from_micros(line.exact_amount_micros),
                is_carried_over=line.is_carried_over,
            )
            for line in stored.lines
        ),
        total=from_micros(invoice.total_micros),
        exact_total=from_micros(invoice.exact_total_micros),
        entry_ids=(),
        status=billing_invoices.InvoiceStatus(invoice.status),
        issued_at=invoice.issued_at,
    )


def total_of(stored: StoredInvoice) -> Decimal:
    """The amount due, in whole cents."""
    return from_micros(stored.invoice.total_micros)
