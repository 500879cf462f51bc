"""The cost ledger in the database: entries for accepted answers, reversals, bonuses.

billing.ledger decides what an answer costs; this module finds the rate card in
force when the answer was accepted, stores the entries as integer micros, and
never updates or deletes one. Every entry carries an idempotency key derived from
what it is for (`answer:<id>:<kind>`, `reversal:<entry id>`, `bonus:<id>:<kind>`),
and entries are inserted with ON CONFLICT DO NOTHING on that key, so writing the
same thing twice (a retried poll, a replayed request) changes nothing.

An answer that is excluded (its worker was blocked) or rejected later gets
reversing entries. One exception, as billing.ledger.reverse explains: an MTurk
assignment was paid when it was approved and stays paid, so excluding its answer
from aggregation reverses nothing.

`record_accepted_answer` runs inside `accept_answer`, the answer hot path: one
SELECT (slot, project, workforce and rate card together) and one INSERT; it
touches the slot again only when the cost differs from its reservation.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billing import ledger as book
from billing.money import from_micros, to_micros
from orchestrator.db import utcnow
from orchestrator.models import Answer, Assignment, LedgerEntry, Project, Workforce
from orchestrator.services import budgets
from orchestrator.services.rate_cards import (
    CARD_COLUMNS,
    CARD_TABLE,
    Pricing,
    card_from_row,
    latest_card_id,
    pricing,
)

if TYPE_CHECKING:
    from orchestrator.services.answers import Slot

L = cast(sa.Table, LedgerEntry.__table__)
A = cast(sa.Table, Assignment.__table__)
# Workforces whose excluded answers are taken back (MTurk pays on approval, for good).
REVERSED_ON_EXCLUSION = ("internal", "vendor")


def to_domain(row: Any) -> book.LedgerEntry:
    """Convert a stored entry (ORM object or row with the ledger's columns) to billing's."""
    return book.LedgerEntry(
        id=row.id,
        kind=book.EntryKind(row.kind),
        amount=from_micros(row.amount_micros),
        currency=row.currency,
        occurred_at=row.occurred_at,
        project_id=row.project_id,
        batch_id=row.batch_id,
        workforce_id=row.workforce_id,
        vendor_id=row.vendor_id,
        worker_id=row.worker_id,
        answer_id=row.answer_id,
        memo=row.memo,
        is_gold=row.is_gold,
        reverses_kind=None if row.reverses_kind is None else book.EntryKind(row.reverses_kind),
        reverses_id=row.reverses_id,
    )


def load_entries(session: Session, condition: sa.ColumnElement[bool]) -> list[book.LedgerEntry]:
    """Return the entries matching `condition` as billing entries, in id order."""
    return [
        to_domain(row) for row in session.execute(sa.select(L).where(condition).order_by(L.c.id))
    ]


def _row(
    entry: book.LedgerEntry, key: str, rate_card_id: int | None, now: datetime
) -> dict[str, Any]:
    return {
        "kind": entry.kind.value,
        "amount_micros": to_micros(entry.amount),
        "currency": entry.currency,
        "project_id": entry.project_id,
        "batch_id": entry.batch_id,
        "workforce_id": entry.workforce_id,
        "vendor_id": entry.vendor_id,
        "worker_id": entry.worker_id,
        "answer_id": entry.answer_id,
        "rate_card_id": rate_card_id,
        "reverses_id": entry.reverses_id,
        "reverses_kind": None if entry.reverses_kind is None else entry.reverses_kind.value,
        "is_gold": entry.is_gold,
        "idempotency_key": key,
        "memo": entry.memo[:500],
        "occurred_at": entry.occurred_at,
        "created_at": now,
    }


def write_entries(
    session: Session, entries: Iterable[tuple[book.LedgerEntry, str]], rate_card_id: int | None
) -> None:
    """Insert `(entry, idempotency key)` pairs; an entry whose key is stored already is skipped."""
    now = utcnow()
    rows = [_row(entry, key, rate_card_id, now) for entry, key in entries]
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        statement: Any = postgresql.insert(L)
    else:
        statement = sqlite.insert(L)
    session.execute(
        statement.values(rows).on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


def keyed(prefix: str, entries: Sequence[book.LedgerEntry]) -> list[tuple[book.LedgerEntry, str]]:
    """Key entries `<prefix>:<kind>`, numbering repeats of a kind (`...:reward:2`)."""
    seen: dict[str, int] = {}
    pairs = []
    for entry in entries:
        seen[entry.kind.value] = seen.get(entry.kind.value, 0) + 1
        count = seen[entry.kind.value]
        suffix = "" if count == 1 else f":{count}"
        pairs.append((entry, f"{prefix}:{entry.kind.value}{suffix}"))
    return pairs


def answer_entries(
    *,
    price: Pricing,
    slot: "Slot",
    answer_id: int,
    worker_id: int,
    accepted_at: datetime,
    seconds_spent: Decimal | None,
    is_first_for_item: bool = False,
) -> tuple[book.LedgerEntry, ...]:
    """Return the entries one accepted answer writes under `price` (billing's rules)."""
    return book.entries_for_accepted_answer(
        card=price.card,
        fee_rule=price.fee_rule,
        is_gold=slot.is_gold,
        occurred_at=accepted_at,
        refs=book.EntryRefs(
            project_id=slot.project_id,
            batch_id=slot.batch_id,
            workforce_id=slot.workforce_id,
            vendor_id=price.vendor_id,
            worker_id=worker_id,
            answer_id=answer_id,
        ),
        reward=price.reward,
        seconds_spent=seconds_spent if price.expected_seconds is not None else None,
        is_first_for_item=is_first_for_item,
    )


def record_accepted_answer(
    session: Session,
    *,
    slot: "Slot",
    answer_id: int,
    worker_id: int,
    accepted_at: datetime,
    time_spent_ms: int | None,
) -> Decimal:
    """Write an accepted answer's ledger entries at the rate in force; return its cost.

    The slot's reservation becomes the cost. A cost above the reservation (the rate
    went up since dispatch) must fit the budgets, or BudgetExceededError (409) refuses
    the answer; the slot then keeps the actual cost, so an exclusion that reopens it
    reserves exactly what the reversal gives back.
    """
    row = session.execute(
        sa.select(
            A.c.reserved_micros,
            A.c.leased_at,
            A.c.lease_expires_at,
            Project.reward_micros,
            Project.currency,
            Project.overlap,
            Workforce.kind,
            Workforce.vendor_id,
            *CARD_COLUMNS,
        )
        .select_from(A)
        .join(Project, Project.id == A.c.project_id)
        .join(Workforce, Workforce.id == A.c.workforce_id)
        .outerjoin(CARD_TABLE, CARD_TABLE.c.id == latest_card_id(Workforce.id, accepted_at))
        .where(A.c.id == slot.id)
    ).one()
    price = pricing(
        kind=row.kind,
        vendor_id=row.vendor_id,
        card=card_from_row(row),
        reward_micros=row.reward_micros,
        currency=row.currency,
        overlap=row.overlap,
        at=accepted_at,
    )
    entries = answer_entries(
        price=price,
        slot=slot,
        answer_id=answer_id,
        worker_id=worker_id,
        accepted_at=accepted_at,
        seconds_spent=_billed_seconds(row, time_spent_ms, accepted_at),
        is_first_for_item=_is_first_for_item(session, price, slot, answer_id),
    )
    cost = sum((entry.amount for entry in entries), Decimal(0))
    actual = to_micros(cost)
    if actual != row.reserved_micros:
        budgets.check_commit(
            session,
            project_id=slot.project_id,
            workforce_id=slot.workforce_id,
            currency=price.card.currency,
            reserved_micros=row.reserved_micros,
            actual_micros=actual,
        )
        session.execute(sa.update(A).where(A.c.id == slot.id).values(reserved_micros=actual))
    write_entries(session, keyed(f"answer:{answer_id}", entries), price.rate_card_id)
    return cost


def _billed_seconds(row: Any, time_spent_ms: int | None, accepted_at: datetime) -> Decimal:
    """Seconds an answer took, capped at its lease: time past the lease was not work.

    Without a reported time, the time from lease to acceptance counts (zero unleased).
    """
    leased = row.leased_at is not None and row.lease_expires_at is not None
    if time_spent_ms is None:
        time_spent_ms = int((accepted_at - row.leased_at).total_seconds() * 1000) if leased else 0
    seconds = Decimal(max(time_spent_ms, 0)) / 1000
    if leased:
        lease = Decimal(int((row.lease_expires_at - row.leased_at).total_seconds() * 1000)) / 1000
        seconds = min(seconds, lease)
    return seconds


def _is_first_for_item(session: Session, price: Pricing, slot: "Slot", answer_id: int) -> bool:
    """Whether the answer is its workforce's only accepted one on the item (per-item price)."""
    if price.vendor_id is None or price.card.price_per_item is None:
        return False
    return not session.scalar(
        sa.select(
            sa.exists().where(
                Answer.item_id == slot.item_id,
                Answer.workforce_id == slot.workforce_id,
                Answer.status == "accepted",
                Answer.id != answer_id,
            )
        )
    )


def reverse_answers(
    session: Session,
    answer_ids: Sequence[int],
    *,
    occurred_at: datetime | None = None,
    memo: str = "",
) -> Decimal:
    """Take back every not yet reversed entry of the answers; return the amount taken back."""
    if not answer_ids:
        return Decimal(0)
    reversal = L.alias("reversal")
    originals = load_entries(
        session,
        sa.and_(
            L.c.answer_id.in_(answer_ids),
            L.c.kind != book.EntryKind.REVERSAL.value,
            ~sa.exists().where(reversal.c.reverses_id == L.c.id),
        ),
    )
    reversals = book.reverse(originals, occurred_at=occurred_at or utcnow(), memo=memo)
    write_entries(
        session,
        [(entry, f"reversal:{entry.reverses_id}") for entry in reversals],
        rate_card_id=None,
    )
    return -sum((entry.amount for entry in reversals), Decimal(0))


def reverse_excluded_answers(
    session: Session, *, project_id: int, worker_id: int, memo: str = "answer excluded"
) -> Decimal:
    """Reverse the entries of a worker's excluded answers in a project (MTurk's stay paid)."""
    answer_ids = session.scalars(
        sa.select(Answer.id)
        .join(Workforce, Workforce.id == Answer.workforce_id)
        .where(
            Answer.project_id == project_id,
            Answer.worker_id == worker_id,
            Answer.status == "excluded",
            Workforce.kind.in_(REVERSED_ON_EXCLUSION),
        )
    ).all()
    return reverse_answers(session, answer_ids, memo=memo)


def record_bonus(
    session: Session,
    *,
    bonus_id: int,
    amount: Decimal,
    price: Pricing,
    project_id: int,
    workforce_id: int,
    worker_id: int,
    occurred_at: datetime,
    memo: str,
) -> tuple[book.LedgerEntry, ...]:
    """Write a paid bonus's entries (the bonus, and MTurk's fee on it); return them."""
    entries = bonus_entries(
        amount=amount,
        price=price,
        project_id=project_id,
        workforce_id=workforce_id,
        worker_id=worker_id,
        occurred_at=occurred_at,
        memo=memo,
    )
    write_entries(session, keyed(f"bonus:{bonus_id}", entries), price.rate_card_id)
    return entries


def bonus_entries(
    *,
    amount: Decimal,
    price: Pricing,
    project_id: int,
    workforce_id: int,
    worker_id: int,
    occurred_at: datetime,
    memo: str,
) -> tuple[book.LedgerEntry, ...]:
    """Return the entries a bonus writes, without storing them (to price it first)."""
    return book.entries_for_bonus(
        amount,
        fee_rule=price.fee_rule,
        currency=price.card.currency,
        occurred_at=occurred_at,
        refs=book.EntryRefs(
            project_id=project_id,
            workforce_id=workforce_id,
            vendor_id=price.vendor_id,
            worker_id=worker_id,
        ),
        memo=memo,
    )
