"""Vendor invoices: lines and totals to the cent, issuing, late entries, CSV and HTML."""

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings

from billing.errors import (
    CurrencyMismatchError,
    InvalidInvoiceError,
    InvoiceImmutableError,
)
from billing.fees import VendorContract
from billing.invoices import (
    CSV_COLUMNS,
    Invoice,
    InvoiceStatus,
    build_invoice,
    issue_invoice,
    minimum_topup_entry,
    rebuild_invoice,
    render_csv,
    render_html,
    uninvoiced,
)
from billing.ledger import (
    EntryKind,
    EntryRefs,
    LedgerEntry,
    entries_for_accepted_answer,
    group_totals,
    reverse,
    total,
)
from billing.money import round_cents
from billing.rates import RateCard
from tests.billing.campaigns import START, Campaign, campaigns, play

D = Decimal
JAN = datetime(2024, 1, 1, tzinfo=UTC)
FEB = datetime(2024, 2, 1, tzinfo=UTC)
MAR = datetime(2024, 3, 1, tzinfo=UTC)
VENDOR = 7
CARD = RateCard(effective_from=JAN, price_per_answer=D("0.05"))
CONTRACT = VendorContract(currency="USD", fee_rate=D("0.10"))


class Ledger:
    """A tiny append-only ledger that gives entries ids, as the orchestrator will."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []

    def add(self, *new: LedgerEntry) -> tuple[LedgerEntry, ...]:
        stored = tuple(replace(e, id=len(self.entries) + i) for i, e in enumerate(new, start=1))
        self.entries.extend(stored)
        return stored

    def answer(
        self,
        at: datetime,
        *,
        answer_id: int,
        batch_id: int = 1,
        project_id: int = 1,
        vendor_id: int = VENDOR,
        card: RateCard = CARD,
    ) -> tuple[LedgerEntry, ...]:
        refs = EntryRefs(
            project_id=project_id, batch_id=batch_id, vendor_id=vendor_id, answer_id=answer_id
        )
        return self.add(
            *entries_for_accepted_answer(
                card=card, fee_rule=CONTRACT, is_gold=False, occurred_at=at, refs=refs
            )
        )


def rows(invoice: Invoice, *fields: str) -> list[tuple[object, ...]]:
    return [tuple(getattr(line, name) for name in fields) for line in invoice.lines]


def jan_invoice(entries: list[LedgerEntry], **overrides: object) -> Invoice:
    fields: dict[str, object] = {
        "vendor": VENDOR,
        "period_start": JAN,
        "period_end": FEB,
        "number": "INV-2024-01",
    }
    fields.update(overrides)
    return build_invoice(entries, **fields)  # type: ignore[arg-type]


def test_invoice_lines_per_batch_and_category() -> None:
    ledger = Ledger()
    for answer_id in range(1, 4):
        ledger.answer(JAN + timedelta(days=answer_id), answer_id=answer_id, batch_id=1)
    ledger.answer(JAN + timedelta(days=5), answer_id=4, batch_id=2, project_id=9)
    invoice = jan_invoice(ledger.entries)

    assert rows(invoice, "description", "project_id", "batch_id", "quantity", "amount") == [
        ("Batch 1: answers", 1, 1, 3, D("0.15")),
        ("Batch 1: fees", 1, 1, 3, D("0.02")),  # 3 × 0.005 = 0.015
        ("Batch 2: answers", 9, 2, 1, D("0.05")),
        ("Batch 2: fees", 9, 2, 1, D("0.00")),  # 0.005 lost the cent to the larger remainder
    ]
    assert invoice.exact_total == D("0.22")
    assert invoice.total == D("0.22") == sum(line.amount for line in invoice.lines)
    assert invoice.status is InvoiceStatus.DRAFT and invoice.issued_at is None
    assert invoice.entry_ids == tuple(e.id for e in ledger.entries)


def test_invoice_lines_per_project() -> None:
    ledger = Ledger()
    ledger.answer(JAN, answer_id=1, batch_id=1, project_id=5)
    ledger.answer(JAN, answer_id=2, batch_id=2, project_id=5)
    invoice = jan_invoice(ledger.entries, group_by="project")
    assert rows(invoice, "description", "project_id", "batch_id", "quantity") == [
        ("Project 5: answers", 5, None, 2),
        ("Project 5: fees", 5, None, 2),
    ]
    assert invoice.total == D("0.11")


def test_invoice_total_is_the_rounded_sum_and_lines_add_up_to_it() -> None:
    # Three lines of x.xx5 each: rounding each line half-up would print 0.03 more than
    # the entries come to. The lines instead share out exactly round(sum) = 6.02.
    ledger = Ledger()
    for batch_id, amount in ((1, "1.005"), (2, "2.005"), (3, "3.005")):
        ledger.add(
            LedgerEntry(
                kind=EntryKind.VENDOR_CHARGE,
                amount=D(amount),
                currency="USD",
                occurred_at=JAN,
                vendor_id=VENDOR,
                batch_id=batch_id,
            )
        )
    invoice = jan_invoice(ledger.entries)
    assert [line.amount for line in invoice.lines] == [D("1.01"), D("2.01"), D("3.00")]
    assert invoice.total == D("6.02") == round_cents(total(ledger.entries))


def test_invoice_bills_only_its_vendor_and_period() -> None:
    ledger = Ledger()
    ledger.answer(JAN, answer_id=1)
    ledger.answer(JAN, answer_id=2, vendor_id=8)  # another vendor
    ledger.answer(FEB, answer_id=3)  # the next period (the end is exclusive)
    invoice = jan_invoice(ledger.entries)
    assert invoice.entry_ids == (1, 2)
    assert invoice.exact_total == D("0.055")


def test_answer_reversed_within_the_period_is_credited_on_its_own_line() -> None:
    ledger = Ledger()
    ledger.answer(JAN, answer_id=1)
    rejected = ledger.answer(JAN, answer_id=2)
    ledger.add(*reverse(rejected, occurred_at=JAN + timedelta(days=2)))
    invoice = jan_invoice(ledger.entries)
    assert rows(invoice, "description", "quantity", "amount") == [
        ("Batch 1: answers", 2, D("0.10")),
        ("Batch 1: answers reversed", -1, D("-0.05")),
        ("Batch 1: fees", 2, D("0.01")),
        ("Batch 1: fees reversed", -1, D("0.00")),  # -0.005 gives its cent to the total
    ]
    assert invoice.total == D("0.06")  # what one answer costs: 0.055 rounded half-up
    assert len(invoice.entry_ids) == 6  # the reversed pair is on the invoice, netting to 0


def test_late_entries_go_to_the_next_invoice() -> None:
    ledger = Ledger()
    ledger.answer(JAN + timedelta(days=10), answer_id=1)
    january = issue_invoice(jan_invoice(ledger.entries), issued_at=FEB + timedelta(days=1))
    assert january.total == D("0.06")

    # After January was issued: a January answer arrives late, and the first one is rejected.
    late = ledger.answer(JAN + timedelta(days=30), answer_id=2)
    ledger.add(*reverse(ledger.entries[:2], occurred_at=FEB + timedelta(days=3)))
    ledger.answer(FEB + timedelta(days=4), answer_id=3)

    invoiced = set(january.entry_ids)
    assert [e.id for e in uninvoiced(ledger.entries, invoiced)] == [3, 4, 5, 6, 7, 8]
    february = build_invoice(
        ledger.entries,
        vendor=VENDOR,
        period_start=FEB,
        period_end=MAR,
        number="INV-2024-02",
        invoiced_ids=invoiced,
    )
    assert rows(february, "description", "quantity", "amount", "is_carried_over") == [
        ("Batch 1: answers (earlier period)", 1, D("0.05"), True),
        ("Batch 1: fees (earlier period)", 1, D("0.01"), True),
        ("Batch 1: answers", 1, D("0.05"), False),
        ("Batch 1: answers reversed", -1, D("-0.05"), False),
        ("Batch 1: fees", 1, D("0.01"), False),
        ("Batch 1: fees reversed", -1, D("-0.01"), False),
    ]
    assert february.total == D("0.06")  # exact 0.055: the cents add up to the rounded sum
    assert set(february.entry_ids) == {e.id for e in late} | {5, 6, 7, 8}
    # January is unchanged and every entry is billed exactly once.
    assert january.entry_ids == (1, 2)
    assert not set(january.entry_ids) & set(february.entry_ids)
    assert january.exact_total + february.exact_total == total(ledger.entries)


def test_entries_must_be_stored_before_they_are_invoiced() -> None:
    unstored = entries_for_accepted_answer(
        card=CARD,
        fee_rule=CONTRACT,
        is_gold=False,
        occurred_at=JAN,
        refs=EntryRefs(vendor_id=VENDOR),
    )
    with pytest.raises(InvalidInvoiceError, match="no id"):
        jan_invoice(list(unstored))


def test_invoice_currency() -> None:
    with pytest.raises(InvalidInvoiceError, match="currency"):
        jan_invoice([])
    empty = jan_invoice([], currency="EUR")
    assert (empty.total, empty.lines, empty.currency) == (D("0.00"), (), "EUR")
    ledger = Ledger()
    ledger.answer(JAN, answer_id=1)
    with pytest.raises(CurrencyMismatchError):
        jan_invoice(ledger.entries, currency="EUR")


def test_invoice_period_must_not_be_empty() -> None:
    with pytest.raises(InvalidInvoiceError, match="period_end"):
        jan_invoice([], currency="USD", period_end=JAN)


def test_issuing_returns_a_new_invoice_and_issued_ones_cannot_change() -> None:
    ledger = Ledger()
    ledger.answer(JAN, answer_id=1)
    draft = jan_invoice(ledger.entries)
    issued = issue_invoice(draft, issued_at=FEB)
    assert issued.status is InvoiceStatus.ISSUED and issued.issued_at == FEB
    assert draft.status is InvoiceStatus.DRAFT  # the draft value is untouched
    assert (issued.lines, issued.total) == (draft.lines, draft.total)

    with pytest.raises(InvoiceImmutableError) as caught:
        issue_invoice(issued, issued_at=FEB)
    assert caught.value.code == "invoice_immutable"
    assert "INV-2024-01" in str(caught.value)
    with pytest.raises(InvoiceImmutableError):
        rebuild_invoice(issued, ledger.entries)
    with pytest.raises(InvoiceImmutableError):
        minimum_topup_entry(issued, CONTRACT, occurred_at=JAN)
    with pytest.raises(InvalidInvoiceError):
        replace(draft, status=InvoiceStatus.ISSUED)  # issued without a date is not an invoice


def test_a_draft_can_be_rebuilt_with_new_entries() -> None:
    ledger = Ledger()
    ledger.answer(JAN, answer_id=1)
    draft = jan_invoice(ledger.entries)
    ledger.answer(JAN + timedelta(days=1), answer_id=2)
    rebuilt = rebuild_invoice(draft, ledger.entries)
    assert rebuilt.number == draft.number and rebuilt.total == D("0.11")


def test_minimum_per_invoice_is_topped_up_through_the_ledger() -> None:
    contract = VendorContract(currency="USD", minimum_per_invoice=D("50.00"))
    ledger = Ledger()
    ledger.answer(JAN, answer_id=1)
    draft = jan_invoice(ledger.entries)
    topup = minimum_topup_entry(draft, contract, occurred_at=FEB - timedelta(seconds=1))
    assert topup is not None
    assert (topup.kind, topup.amount, topup.vendor_id) == (
        EntryKind.ADJUSTMENT,
        D("49.945"),
        VENDOR,
    )
    ledger.add(topup)
    final = rebuild_invoice(draft, ledger.entries)
    assert final.total == D("50.00") and final.exact_total == D("50.00")
    assert final.lines[-1].description == "No batch: adjustments"
    assert minimum_topup_entry(final, contract, occurred_at=JAN) is None
    with pytest.raises(InvalidInvoiceError, match="inside the invoice period"):
        minimum_topup_entry(draft, contract, occurred_at=FEB)
    with pytest.raises(CurrencyMismatchError):
        minimum_topup_entry(draft, VendorContract(currency="EUR"), occurred_at=JAN)


# --- Rendering ------------------------------------------------------------------------


def sample_invoice() -> Invoice:
    ledger = Ledger()
    for answer_id in range(1, 4):
        ledger.answer(JAN, answer_id=answer_id, batch_id=answer_id % 2)
    return jan_invoice(ledger.entries, vendor_name='Acme <script>alert("x")</script> & Co')


def test_render_csv_round_trips_and_adds_up() -> None:
    invoice = sample_invoice()
    rows = list(csv.reader(io.StringIO(render_csv(invoice))))
    assert tuple(rows[0]) == CSV_COLUMNS
    body, total_row = rows[1:-1], rows[-1]
    assert len(body) == len(invoice.lines)
    assert body[0] == ["Batch 0: answers", "1", "0", "1", "0.05", "USD"]
    assert total_row == ["Total", "", "", "", format(invoice.total, "f"), "USD"]
    assert sum(D(row[4]) for row in body) == D(total_row[4])


def test_render_csv_neutralises_formulas() -> None:
    invoice = sample_invoice()
    evil = replace(invoice, lines=(replace(invoice.lines[0], description="=HYPERLINK(1)"),))
    rows = list(csv.reader(io.StringIO(render_csv(evil))))
    assert rows[1][0] == "'=HYPERLINK(1)"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_render_html_is_a_standalone_escaped_page() -> None:
    invoice = issue_invoice(sample_invoice(), issued_at=FEB)
    page = render_html(invoice)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page  # the vendor's name is text, not markup
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in page
    parsed = _Page()
    parsed.feed(page)
    assert "script" not in parsed.tags and "link" not in parsed.tags
    text = "".join(parsed.text)
    assert 'Acme <script>alert("x")</script> & Co' in text  # and it reads back exactly
    assert "INV-2024-01" in text and "issued" in text and "Issued 2024-02-01" in text
    assert parsed.tags.count("tr") == len(invoice.lines) + 2  # head, lines, total
    assert f"{invoice.total} USD" in text


# --- Random campaigns -----------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(campaign=campaigns())
def test_random_campaign_invoices_agree_with_the_ledger(campaign: Campaign) -> None:
    played = play(campaign)
    entries = played.entries
    by_vendor = group_totals(entries, "vendor")
    months = [START + timedelta(days=30 * k) for k in range(6)]  # covers every entry

    for vendor in {e.vendor_id for e in entries if e.vendor_id is not None}:
        invoiced: set[int] = set()
        invoices: list[Invoice] = []
        for number, (start, end) in enumerate(zip(months, months[1:], strict=False)):
            # Each invoice is built when its period closes, from what has arrived by then;
            # entries that arrive later belong to a later invoice.
            arrived = [e for e in entries if played.arrivals[e.id] < end]  # type: ignore[index]
            invoice = build_invoice(
                arrived,
                vendor=vendor,
                period_start=start,
                period_end=end,
                number=f"V{vendor}-{number}",
                currency="USD",
                invoiced_ids=invoiced,
            )
            own = [e for e in entries if e.id in set(invoice.entry_ids)]
            assert invoice.exact_total == total(own)
            assert invoice.total == round_cents(invoice.exact_total)
            assert sum((line.amount for line in invoice.lines), D(0)) == invoice.total
            assert sum((line.exact_amount for line in invoice.lines), D(0)) == invoice.exact_total
            assert all(abs(line.amount - line.exact_amount) < D("0.01") for line in invoice.lines)
            assert all(e.vendor_id == vendor and e.occurred_at < end for e in own)
            assert not invoiced & set(invoice.entry_ids)  # nothing billed twice
            invoiced |= set(invoice.entry_ids)
            invoices.append(issue_invoice(invoice, issued_at=end))

        # Every entry of the vendor is billed exactly once, and the invoices add up to the
        # vendor's ledger total exactly (and to the cent within rounding per invoice).
        vendor_ids = {e.id for e in entries if e.vendor_id == vendor}
        assert invoiced == vendor_ids
        exact = sum((inv.exact_total for inv in invoices), D(0))
        assert exact == by_vendor[vendor]
        billed = sum((inv.total for inv in invoices), D(0))
        assert abs(billed - exact) <= D("0.005") * len(invoices)
