"""Vendor invoices built from the ledger: lines, totals, issuing, CSV and printable HTML.

An invoice covers one vendor's ledger entries up to the end of a period. Its
lines are grouped by batch or by project and by what was billed (answers, gold
answers, fees, bonuses, adjustments, refunds), with reversals of each on lines
of their own. Per-item charges are on the answers line of the answer that
triggered them. Each line's amount is rounded to
the cent so that the lines add up exactly to the invoice total, which is the
exact sum of its entries rounded half-up to the cent (see
:func:`billing.money.allocate_cents`).

Issued invoices never change. Entries that reach the ledger after the invoice
for their period was issued (a late answer, a reversal) are not lost: they are
not in the issued invoice's ``entry_ids``, so :func:`uninvoiced` keeps them and
the next period's invoice bills them on lines marked "earlier period".
"""

import csv
import enum
import html
import io
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from billing._checks import check_currency, check_utc
from billing.errors import (
    CurrencyMismatchError,
    InvalidBillingInputError,
    InvalidInvoiceError,
    InvoiceImmutableError,
)
from billing.fees import VendorContract, vendor_minimum_topup
from billing.ledger import EntryKind, LedgerEntry, total
from billing.money import allocate_cents, format_amount

InvoiceGrouping = Literal["batch", "project"]


class InvoiceStatus(enum.StrEnum):
    """Where an invoice is in its life."""

    DRAFT = "draft"
    ISSUED = "issued"


@dataclass(frozen=True)
class InvoiceLine:
    """One line of an invoice.

    Attributes:
        description: What the line bills, for people.
        project_id: The project of the line's entries, when they share one.
        batch_id: The batch of the line's entries (batch grouping only).
        quantity: Answers on the line, signed: each answer counts once (however many
            entries it has on the line, e.g. an answer charge and a per-item charge) with
            the sign of its amount, so a line of reversals has a negative quantity.
            Entries without an answer count one each, by sign.
        amount: The line's amount in whole cents, in the invoice currency.
        exact_amount: The exact sum of the line's entries, before rounding.
        is_carried_over: Whether the line bills entries from before the period, which
            arrived after the invoice for their own period was issued.
    """

    description: str
    project_id: int | None
    batch_id: int | None
    quantity: int
    amount: Decimal
    exact_amount: Decimal
    is_carried_over: bool = False


@dataclass(frozen=True, kw_only=True)
class Invoice:
    """A vendor invoice; frozen, and immutable in meaning once issued.

    Attributes:
        number: The invoice number, unique per vendor.
        vendor_id: The vendor billed for.
        vendor_name: The vendor's name as printed.
        period_start: Start of the period (inclusive, UTC).
        period_end: End of the period (exclusive, UTC).
        group_by: ``"batch"`` or ``"project"``.
        currency: ISO 4217 code of every amount.
        lines: The lines, amounts in whole cents.
        total: The amount due in whole cents: the sum of the lines, equal to the exact
            sum of the entries rounded half-up to the cent.
        exact_total: The exact sum of the entries.
        entry_ids: Ids of the ledger entries billed, ascending.
        status: Draft or issued.
        issued_at: When it was issued (UTC), None for a draft.
    """

    number: str
    vendor_id: int
    vendor_name: str
    period_start: datetime
    period_end: datetime
    group_by: InvoiceGrouping
    currency: str
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    exact_total: Decimal
    entry_ids: tuple[int, ...]
    status: InvoiceStatus = InvoiceStatus.DRAFT
    issued_at: datetime | None = None

    def __post_init__(self) -> None:
        if (self.status is InvoiceStatus.ISSUED) != (self.issued_at is not None):
            raise InvalidInvoiceError(
                "an invoice has issued_at exactly when it is issued", details={"field": "issued_at"}
            )

    @property
    def is_issued(self) -> bool:
        """Whether the invoice has been issued and can no longer change."""
        return self.status is InvoiceStatus.ISSUED


# (label, order) per (kind it counts as, gold); the order keeps lines stable.
_CATEGORIES: dict[tuple[EntryKind, bool], tuple[str, int]] = {
    (EntryKind.VENDOR_CHARGE, False): ("answers", 0),
    (EntryKind.VENDOR_CHARGE, True): ("gold answers", 1),
    (EntryKind.REWARD, False): ("rewards", 2),
    (EntryKind.REWARD, True): ("gold rewards", 3),
    (EntryKind.PLATFORM_FEE, False): ("fees", 4),
    (EntryKind.PLATFORM_FEE, True): ("fees on gold answers", 5),
    (EntryKind.BONUS, False): ("bonuses", 6),
    (EntryKind.BONUS, True): ("bonuses", 6),
    (EntryKind.ADJUSTMENT, False): ("adjustments", 7),
    (EntryKind.ADJUSTMENT, True): ("adjustments", 7),
    (EntryKind.REFUND, False): ("refunds", 8),
    (EntryKind.REFUND, True): ("refunds", 8),
}


def uninvoiced(
    entries: Iterable[LedgerEntry], invoiced_ids: Collection[int]
) -> tuple[LedgerEntry, ...]:
    """Return the entries that no invoice has billed yet.

    Args:
        entries: Ledger entries.
        invoiced_ids: Ids of entries already on an invoice (the union of every earlier
            invoice's ``entry_ids``).

    Returns:
        The entries whose id is not in ``invoiced_ids``, in their order; entries without an
        id (not stored yet) are kept.
    """
    billed = set(invoiced_ids)
    return tuple(entry for entry in entries if entry.id is None or entry.id not in billed)


def _net_quantity(entries: list[LedgerEntry]) -> int:
    """Count answers by the sign of their net amount; entries without an answer by their own."""
    per_answer: dict[int, Decimal] = {}
    quantity = 0
    for entry in entries:
        if entry.answer_id is None:
            quantity += (entry.amount > 0) - (entry.amount < 0)
        else:
            per_answer[entry.answer_id] = per_answer.get(entry.answer_id, Decimal(0)) + entry.amount
    return quantity + sum((net > 0) - (net < 0) for net in per_answer.values())


def build_invoice(
    entries: Iterable[LedgerEntry],
    *,
    vendor: int,
    period_start: datetime,
    period_end: datetime,
    number: str,
    group_by: InvoiceGrouping = "batch",
    currency: str | None = None,
    vendor_name: str = "",
    invoiced_ids: Collection[int] = (),
) -> Invoice:
    """Build a draft invoice for one vendor and one period.

    The invoice bills every entry of the vendor that occurred before ``period_end`` and
    is not in ``invoiced_ids``: the period's own entries, and earlier ones that came in
    after their period's invoice was issued (on lines marked as carried over). Entries at
    or after ``period_end`` wait for the next invoice.

    Args:
        entries: Ledger entries; those of other vendors are ignored, so the whole ledger
            may be passed.
        vendor: The vendor's id (``LedgerEntry.vendor_id``).
        period_start: Start of the period, inclusive (timezone-aware).
        period_end: End of the period, exclusive (timezone-aware).
        number: The invoice number.
        group_by: ``"batch"`` for a line per batch and category, ``"project"`` for a line
            per project and category.
        currency: The invoice currency; None takes the entries' currency (required when
            there are no entries).
        vendor_name: The vendor's name as printed on the invoice.
        invoiced_ids: Ids of entries already billed by earlier invoices.

    Returns:
        A draft :class:`Invoice` whose ``total`` is the exact sum of its entries rounded
        half-up to the cent, and equals the sum of its line amounts.

    Raises:
        InvalidInvoiceError: An entry to bill has no id (it could be billed twice), the
            period is empty, or the currency is unknown.
        CurrencyMismatchError: The entries are not all in the invoice currency.
    """
    start = check_utc(period_start, "period_start")
    end = check_utc(period_end, "period_end")
    if end <= start:
        raise InvalidInvoiceError(
            "period_end must be after period_start", details={"field": "period_end"}
        )
    if group_by not in ("batch", "project"):
        raise InvalidBillingInputError(
            f"group_by must be 'batch' or 'project', got {group_by!r}",
            details={"field": "group_by"},
        )
    billed = set(invoiced_ids)
    selected = [
        entry
        for entry in entries
        if entry.vendor_id == vendor and entry.occurred_at < end and entry.id not in billed
    ]
    unstored = [entry for entry in selected if entry.id is None]
    if unstored:
        raise InvalidInvoiceError(
            f"{len(unstored)} entries have no id; store entries before invoicing them",
            details={"field": "entries"},
        )
    if currency is None:
        if not selected:
            raise InvalidInvoiceError(
                "no entries to take the currency from; pass currency",
                details={"field": "currency"},
            )
        currency = selected[0].currency
    currency = check_currency(currency)
    exact_total = total(selected, currency)

    # Line key: (carried over, group, category order, is a reversal, label).
    groups: dict[tuple[bool, int | None, int, bool, str], list[LedgerEntry]] = {}
    for entry in selected:
        label, order = _CATEGORIES[(entry.cost_kind, entry.is_gold)]
        is_reversal = entry.kind is EntryKind.REVERSAL
        if is_reversal:
            # Credits get lines of their own, so a vendor sees what was taken back
            # instead of a charge silently shrinking.
            label += " reversed"
        group_value = entry.batch_id if group_by == "batch" else entry.project_id
        is_late = entry.occurred_at < start
        groups.setdefault((is_late, group_value, order, is_reversal, label), []).append(entry)

    # Carried-over lines first, then by group (None last), then category, each credit
    # right after its charge.
    keys = sorted(groups, key=lambda key: (not key[0], key[1] is None, key[1] or 0, key[2], key[3]))
    drafts: list[tuple[str, int | None, int | None, int, Decimal, bool]] = []
    for key in keys:
        is_late, group_value, _, _, label = key
        members = groups[key]
        exact = sum((entry.amount for entry in members), Decimal(0))
        quantity = _net_quantity(members)
        if exact == 0 and quantity == 0:
            continue  # only zero adjustments: nothing to show
        projects = {entry.project_id for entry in members}
        project_id = projects.pop() if len(projects) == 1 else None
        if group_by == "batch":
            where = f"Batch {group_value}" if group_value is not None else "No batch"
            batch_id = group_value
        else:
            where = f"Project {group_value}" if group_value is not None else "No project"
            batch_id = None
        description = f"{where}: {label}" + (" (earlier period)" if is_late else "")
        drafts.append((description, project_id, batch_id, quantity, exact, is_late))

    rounded = allocate_cents([draft[4] for draft in drafts])
    lines = tuple(
        InvoiceLine(
            description=description,
            project_id=project_id,
            batch_id=batch_id,
            quantity=quantity,
            amount=amount,
            exact_amount=exact,
            is_carried_over=is_late,
        )
        for (description, project_id, batch_id, quantity, exact, is_late), amount in zip(
            drafts, rounded, strict=True
        )
    )
    return Invoice(
        number=number,
        vendor_id=vendor,
        vendor_name=vendor_name,
        period_start=start,
        period_end=end,
        group_by=group_by,
        currency=currency,
        lines=lines,
        # Dropped lines are exactly zero, so the rounded lines still add up to the total.
        total=sum(rounded, Decimal("0.00")),
        exact_total=exact_total,
        entry_ids=tuple(sorted(entry.id for entry in selected if entry.id is not None)),
    )


def issue_invoice(invoice: Invoice, *, issued_at: datetime) -> Invoice:
    """Return ``invoice`` issued: a new, issued Invoice; the draft is left as it was.

    Raises:
        InvoiceImmutableError: The invoice is already issued.
    """
    if invoice.is_issued:
        raise InvoiceImmutableError(invoice.number)
    return replace(
        invoice, status=InvoiceStatus.ISSUED, issued_at=check_utc(issued_at, "issued_at")
    )


def rebuild_invoice(
    invoice: Invoice, entries: Iterable[LedgerEntry], *, invoiced_ids: Collection[int] = ()
) -> Invoice:
    """Return a draft invoice rebuilt from ``entries`` with the same number, vendor and period.

    Raises:
        InvoiceImmutableError: The invoice is issued; its changes belong on the next invoice.
    """
    if invoice.is_issued:
        raise InvoiceImmutableError(invoice.number)
    return build_invoice(
        entries,
        vendor=invoice.vendor_id,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        number=invoice.number,
        group_by=invoice.group_by,
        currency=invoice.currency,
        vendor_name=invoice.vendor_name,
        invoiced_ids=invoiced_ids,
    )


def minimum_topup_entry(
    invoice: Invoice, contract: VendorContract, *, occurred_at: datetime
) -> LedgerEntry | None:
    """Return the adjustment that lifts a draft invoice to the contract's minimum, if needed.

    The top-up is a ledger entry, not an invoice-only line, so the invoice still equals
    the sum of its entries: store the entry, then :func:`rebuild_invoice`.

    Args:
        invoice: The draft invoice.
        contract: The vendor's contract.
        occurred_at: When the top-up is booked; must fall inside the invoice period.

    Returns:
        An ``adjustment`` entry for ``minimum_per_invoice - exact_total``, or None when the
        invoice already reaches the minimum.

    Raises:
        InvoiceImmutableError: The invoice is issued.
        CurrencyMismatchError: The contract is in another currency.
    """
    if invoice.is_issued:
        raise InvoiceImmutableError(invoice.number)
    moment = check_utc(occurred_at, "occurred_at")
    if not invoice.period_start <= moment < invoice.period_end:
        raise InvalidInvoiceError(
            "the top-up must occur inside the invoice period", details={"field": "occurred_at"}
        )
    if contract.currency != invoice.currency:
        raise CurrencyMismatchError(invoice.currency, contract.currency, context="vendor contract")
    topup = vendor_minimum_topup(contract, invoice.exact_total)
    if topup == 0:
        return None
    return LedgerEntry(
        kind=EntryKind.ADJUSTMENT,
        amount=topup,
        currency=invoice.currency,
        occurred_at=moment,
        vendor_id=invoice.vendor_id,
        memo=f"minimum invoice amount {format_amount(contract.minimum_per_invoice)}",
    )


CSV_COLUMNS = ("description", "project_id", "batch_id", "quantity", "amount", "currency")


def _csv_text(value: str) -> str:
    """Neutralise text a spreadsheet would run as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def render_csv(invoice: Invoice) -> str:
    """Render the invoice lines as CSV with a header row and a final ``Total`` row.

    Args:
        invoice: The invoice.

    Returns:
        CSV text (RFC 4180, CRLF line ends) with the columns in :data:`CSV_COLUMNS`;
        amounts are plain decimal strings with two decimals, empty cells for no reference.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for line in invoice.lines:
        writer.writerow(
            (
                _csv_text(line.description),
                "" if line.project_id is None else line.project_id,
                "" if line.batch_id is None else line.batch_id,
                line.quantity,
                format_amount(line.amount),
                invoice.currency,
            )
        )
    writer.writerow(("Total", "", "", "", format_amount(invoice.total), invoice.currency))
    return buffer.getvalue()


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #111; }
h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
th, td { border-bottom: 1px solid #ccc; padding: 0.35rem 0.5rem; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: bold; border-top: 2px solid #111; }
.status { text-transform: uppercase; letter-spacing: 0.05em; }
@media print { body { margin: 0; } }
"""


def render_html(invoice: Invoice) -> str:
    """Render the invoice as a standalone, printable HTML page.

    Every value from data (names, numbers, descriptions) goes through ``html.escape``;
    the page has no scripts and loads nothing.

    Args:
        invoice: The invoice.

    Returns:
        A complete HTML5 document as text.
    """

    def esc(value: object) -> str:
        """Escape any value for HTML text or a quoted attribute."""
        return html.escape(str(value), quote=True)

    def ref(value: int | None) -> str:
        """Render an optional reference as an empty cell or its escaped id."""
        return "" if value is None else esc(value)

    rows = "\n".join(
        "<tr>"
        f"<td>{esc(line.description)}</td>"
        f'<td class="num">{ref(line.project_id)}</td>'
        f'<td class="num">{ref(line.batch_id)}</td>'
        f'<td class="num">{esc(line.quantity)}</td>'
        f'<td class="num">{esc(format_amount(line.amount))}</td>'
        "</tr>"
        for line in invoice.lines
    )
    issued = (
        f"<p>Issued {esc(invoice.issued_at.date().isoformat())}</p>"
        if invoice.issued_at is not None
        else ""
    )
    vendor = invoice.vendor_name or f"Vendor {invoice.vendor_id}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Invoice {esc(invoice.number)}</title>
<style>{_HTML_STYLE}</style>
</head>
<body>
<h1>Invoice {esc(invoice.number)}</h1>
<p class="status">{esc(invoice.status.value)}</p>
<p>{esc(vendor)}</p>
<p>Period {esc(invoice.period_start.isoformat())} to
{esc(invoice.period_end.isoformat())} (UTC, end exclusive)</p>
{issued}
<table>
<thead><tr><th>Description</th><th class="num">Project</th><th class="num">Batch</th>
<th class="num">Quantity</th><th class="num">Amount ({esc(invoice.currency)})</th></tr></thead>
<tbody>
{rows}
</tbody>
<tfoot><tr><td colspan="4">Total</td>
<td class="num">{esc(format_amount(invoice.total))} {esc(invoice.currency)}</td></tr></tfoot>
</table>
</body>
</html>
"""
