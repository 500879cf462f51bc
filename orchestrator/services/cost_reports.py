"""Cost reports for finance: ledger totals by group, and a project's cost per label.

The database adds up integer micros (exact, and far faster than loading every
entry); the split into rewards, fees, gold and other and the cost per label are
billing.ledger's, applied to one summed entry per (kind, reversed kind, gold)
class, which gives the same amounts as applying them to every entry, to the micro.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing import ledger as book
from billing.money import format_amount, from_micros
from orchestrator.models import Item, LedgerEntry, Project, Vendor, Worker, Workforce
from orchestrator.services.projects import get_project

GROUPS = ("project", "workforce", "vendor", "batch", "worker", "day")
L = LedgerEntry.__table__
# billing wants an instant on every entry; summed classes have none of their own.
_SUMMED_AT = datetime(1970, 1, 1, tzinfo=UTC)
NO_LABELS_NOTE = (
    "no items are labelled yet: cost per label is undefined until aggregation labels items"
)


@dataclass(frozen=True)
class CostSplit:
    """Money in one currency, split as billing.ledger.cost_breakdown splits it."""

    currency: str
    total: Decimal
    rewards: Decimal
    fees: Decimal
    gold: Decimal
    other: Decimal
    entries: int


@dataclass(frozen=True)
class CostGroup:
    """One group of a cost report: its key, a name for people, and its money."""

    key: str | None
    name: str | None
    cost: CostSplit


@dataclass(frozen=True)
class CostReport:
    """Ledger totals by group, with the grand totals per currency."""

    group_by: str
    start: date | None
    end: date | None
    groups: list[CostGroup]
    totals: list[CostSplit]


def _day(session: Session) -> sa.ColumnElement[Any]:
    """The UTC calendar day of an entry, as the database computes it."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", L.c.occurred_at))
    return sa.func.date(L.c.occurred_at)  # SQLite stores UTC text


def _group_column(session: Session, group_by: str) -> sa.ColumnElement[Any]:
    if group_by == "day":
        return _day(session)
    return L.c[f"{group_by}_id"]


def _summed_entries(rows: Iterable[Any]) -> list[book.LedgerEntry]:
    """Turn (kind, reverses_kind, is_gold, currency, micros) sums into billing entries."""
    return [
        book.LedgerEntry(
            kind=book.EntryKind(row.kind),
            reverses_kind=None if row.reverses_kind is None else book.EntryKind(row.reverses_kind),
            is_gold=bool(row.is_gold),
            currency=row.currency,
            amount=from_micros(int(row.micros)),
            occurred_at=_SUMMED_AT,
        )
        for row in rows
    ]


def _split(currency: str, rows: Sequence[Any]) -> CostSplit:
    breakdown = book.cost_breakdown(_summed_entries(rows), 0, currency=currency)
    return CostSplit(
        currency=currency,
        total=breakdown.total,
        rewards=breakdown.rewards,
        fees=breakdown.fees,
        gold=breakdown.gold,
        other=breakdown.other,
        entries=sum(int(row.entries) for row in rows),
    )


def _period(start: date | None, end: date | None) -> list[sa.ColumnElement[bool]]:
    conditions = []
    if start is not None:
        conditions.append(L.c.occurred_at >= datetime.combine(start, time(), UTC))
    if end is not None:
        conditions.append(L.c.occurred_at < datetime.combine(end, time(), UTC))
    return conditions


def cost_report(
    session: Session,
    *,
    group_by: str,
    project_id: int | None = None,
    workforce_id: int | None = None,
    vendor_id: int | None = None,
    start: date | None = None,
    end: date | None = None,
) -> CostReport:
    """Total the ledger by project, workforce, vendor, batch, worker or UTC day.

    Filters narrow the entries; `start` is inclusive and `end` exclusive (UTC days).
    Groups in several currencies appear once per currency; entries without the
    reference (a bonus has no batch) form a group whose key is None, listed last.
    """
    group = _group_column(session, group_by).label("group_key")
    conditions = _period(start, end)
    for column, value in (
        ("project_id", project_id),
        ("workforce_id", workforce_id),
        ("vendor_id", vendor_id),
    ):
        if value is not None:
            conditions.append(L.c[column] == value)
    rows = session.execute(
        sa.select(
            group,
            L.c.currency,
            L.c.kind,
            L.c.reverses_kind,
            L.c.is_gold,
            sa.func.sum(L.c.amount_micros).label("micros"),
            sa.func.count().label("entries"),
        )
        .where(*conditions)
        .group_by(group, L.c.currency, L.c.kind, L.c.reverses_kind, L.c.is_gold)
    ).all()
    by_group: dict[tuple[Any, str], list[Any]] = {}
    by_currency: dict[str, list[Any]] = {}
    for row in rows:
        key = _normalise_key(row.group_key)
        by_group.setdefault((key, row.currency), []).append(row)
        by_currency.setdefault(row.currency, []).append(row)
    names = _names(session, group_by, {key for key, _ in by_group if key is not None})
    ordered = sorted(by_group, key=lambda k: (k[0] is None, k[0] if k[0] is not None else 0, k[1]))
    groups = [
        CostGroup(
            key=None if key is None else str(key),
            name=names.get(key),
            cost=_split(currency, by_group[(key, currency)]),
        )
        for key, currency in ordered
    ]
    totals = [_split(currency, by_currency[currency]) for currency in sorted(by_currency)]
    return CostReport(group_by=group_by, start=start, end=end, groups=groups, totals=totals)


def _normalise_key(value: Any) -> Any:
    """Make day keys ISO strings on both backends (PostgreSQL gives dates, SQLite text)."""
    if isinstance(value, date):
        return value.isoformat()
    return value


def _names(session: Session, group_by: str, keys: set[Any]) -> dict[Any, str]:
    """Names for people: project, workforce and vendor names, workers' external ids."""
    columns = {
        "project": (Project.id, Project.name),
        "workforce": (Workforce.id, Workforce.name),
        "vendor": (Vendor.id, Vendor.name),
        "worker": (Worker.id, Worker.external_id),
    }
    if group_by not in columns or not keys:
        return {}
    key_column, name_column = columns[group_by]
    return dict(
        session.execute(sa.select(key_column, name_column).where(key_column.in_(keys))).all()
    )


@dataclass(frozen=True)
class CostPerLabel:
    """A project's cost per labelled item, with and without the gold overhead."""

    project_id: int
    currency: str
    items: int
    labelled_items: int
    total: Decimal
    rewards: Decimal
    fees: Decimal
    gold: Decimal
    other: Decimal
    cost_per_label: Decimal | None
    cost_per_label_without_gold: Decimal | None
    note: str | None


def cost_per_label(session: Session, project_id: int) -> CostPerLabel:
    """Return a project's cost per label = project cost / labelled items.

    Labelled items are the project's non-gold items with a final aggregated label
    (`Item.label` set); gold items are known already, and what their answers cost is
    the gold overhead, shown apart. With no labelled item the cost per label is None
    and `note` says so.
    """
    project = get_project(session, project_id)
    counts = session.execute(
        sa.select(sa.func.count(), sa.func.count(Item.label)).where(
            Item.project_id == project.id, Item.gold_label.is_(None)
        )
    ).one()
    rows = session.execute(
        sa.select(
            L.c.currency,
            L.c.kind,
            L.c.reverses_kind,
            L.c.is_gold,
            sa.func.sum(L.c.amount_micros).label("micros"),
        )
        .where(L.c.project_id == project.id)
        .group_by(L.c.currency, L.c.kind, L.c.reverses_kind, L.c.is_gold)
    ).all()
    labelled = int(counts[1])
    breakdown = book.cost_breakdown(_summed_entries(rows), labelled, currency=project.currency)
    return CostPerLabel(
        project_id=project.id,
        currency=project.currency,
        items=int(counts[0]),
        labelled_items=labelled,
        total=breakdown.total,
        rewards=breakdown.rewards,
        fees=breakdown.fees,
        gold=breakdown.gold,
        other=breakdown.other,
        cost_per_label=breakdown.per_label,
        cost_per_label_without_gold=breakdown.per_label_without_gold,
        note=NO_LABELS_NOTE if labelled == 0 else None,
    )


COST_COLUMNS = ("currency", "total", "rewards", "fees", "gold", "other", "entries")


def _cells(split: CostSplit) -> list[str | int]:
    return [
        split.currency,
        format_amount(split.total),
        format_amount(split.rewards),
        format_amount(split.fees),
        format_amount(split.gold),
        format_amount(split.other),
        split.entries,
    ]


def _safe(value: str | None) -> str:
    """Neutralise text a spreadsheet would run as a formula (CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_cost_report_csv(report: CostReport) -> str:
    """Render a cost report as CSV: one row per group, then a total row per currency."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([report.group_by, "name", *COST_COLUMNS])
    for group in report.groups:
        writer.writerow([group.key or "", _safe(group.name), *_cells(group.cost)])
    for split in report.totals:
        writer.writerow(["total", "", *_cells(split)])
    return buffer.getvalue()


def render_cost_per_label_csv(result: CostPerLabel) -> str:
    """Render a project's cost per label as a one-row CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = [
        "project_id",
        "currency",
        "items",
        "labelled_items",
        "total",
        "rewards",
        "fees",
        "gold",
        "other",
        "cost_per_label",
        "cost_per_label_without_gold",
    ]
    writer.writerow(header)
    writer.writerow(
        [
            result.project_id,
            result.currency,
            result.items,
            result.labelled_items,
            *(
                format_amount(amount)
                for amount in (result.total, result.rewards, result.fees, result.gold, result.other)
            ),
            "" if result.cost_per_label is None else format_amount(result.cost_per_label),
            ""
            if result.cost_per_label_without_gold is None
            else format_amount(result.cost_per_label_without_gold),
        ]
    )
    return buffer.getvalue()
