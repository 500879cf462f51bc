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

`record_accepted_answers` runs in every flush of `answers.AnswerIntake`, the
answer hot path: one SELECT (slots, projects, workforces and rate cards together)
and one multi-row INSERT for all the flushed answers; it touches the slots again
only when a cost differs from its reservation.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing import ledger as book
from billing.money import from_micros, to_micros
from orchestrator.db import utcnow
from orchestrator.models import Answer, Assignment, LedgerEntry, Project, Workforce
from orchestrator.models.types import BigId
from orchestrator.services import budgets, bulk
from orchestrator.services.rate_cards import (
    CARD_COLUMNS,
    CARD_TABLE,
    Pricing,
    latest_card_id,
    pricing_from_row,
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
    _insert_rows(session, [_row(entry, key, rate_card_id, now) for entry, key in entries])


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    bulk.insert_rows(
        session,
        L,
        rows,
        lambda insert: insert.on_conflict_do_nothing(index_elements=["idempotency_key"]),
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


@dataclass(frozen=True)
class AcceptedCost:
    """An accepted answer to put on the ledger: its slot, id, worker and reported time."""

    slot: "Slot"
    answer_id: int
    worker_id: int
    time_spent_ms: int | None


def record_accepted_answers(
    session: Session, answers: Sequence[AcceptedCost], *, accepted_at: datetime
) -> Decimal:
    """Write accepted answers' ledger entries at the rate in force; return their cost.

    Each slot's reservation becomes its answer's cost. Costs above the reservations
    (the rate went up since dispatch) must fit the budgets, or BudgetExceededError
    (409) refuses the answers; the slots then keep the actual costs, so an exclusion
    that reopens one reserves exactly what the reversal gives back. One SELECT reads
    every slot with its project, workforce and rate card; one INSERT writes the entries.
    """
    if not answers:
        return Decimal(0)
    rows = {
        row.id: row
        for row in session.execute(
            sa.select(
                A.c.id,
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
            .where(bulk.among(session, A.c.id, [answer.slot.id for answer in answers]))
        ).all()
    }
    prices: dict[tuple[Any, ...], Pricing] = {}
    for row in rows.values():
        key = _price_key(row)
        if key not in prices:
            prices[key] = pricing_from_row(row, accepted_at)
    priced = [
        (answer, rows[answer.slot.id], prices[_price_key(rows[answer.slot.id])])
        for answer in answers
    ]
    first_for_item = _first_for_item(session, priced)
    total = Decimal(0)
    rows_out: list[dict[str, Any]] = []
    resized: list[dict[str, int]] = []
    excess: dict[tuple[int, int, str], list[int]] = defaultdict(lambda: [0, 0])
    # Answers alike in price, gold, first-for-item and billed time cost the same: billing
    # works out one answer's entries, the others' rows copy them with their own references.
    templates: dict[tuple[Any, ...], tuple[list[dict[str, Any]], Decimal]] = {}
    now = utcnow()
    for (answer, row, price), is_first in zip(priced, first_for_item, strict=True):
        if row.kind == "mturk":
            # MTurk charges when it approves the assignment: its entries are written then
            # (orchestrator.services.mturk_review), never here, so nothing is charged twice.
            continue
        seconds = _billed_seconds(row, answer.time_spent_ms, accepted_at)
        slot = answer.slot
        alike = (
            _price_key(row),
            slot.project_id,
            slot.workforce_id,
            slot.is_gold,
            is_first,
            seconds if price.expected_seconds is not None else None,
        )
        if alike not in templates:
            made = answer_entries(
                price=price,
                slot=slot,
                answer_id=answer.answer_id,
                worker_id=answer.worker_id,
                accepted_at=accepted_at,
                seconds_spent=seconds,
                is_first_for_item=is_first,
            )
            templates[alike] = (
                [_row(entry, key, price.rate_card_id, now) for entry, key in keyed("", made)],
                sum((entry.amount for entry in made), Decimal(0)),
            )
        template, cost = templates[alike]
        rows_out += [
            entry
            | {
                "batch_id": slot.batch_id,
                "worker_id": answer.worker_id,
                "answer_id": answer.answer_id,
                "idempotency_key": f"answer:{answer.answer_id}{entry['idempotency_key']}",
            }
            for entry in template
        ]
        total += cost
        actual = to_micros(cost)
        if actual != row.reserved_micros:
            resized.append({"slot": answer.slot.id, "actual": actual})
        if actual > row.reserved_micros:
            over = excess[(answer.slot.project_id, answer.slot.workforce_id, price.card.currency)]
            over[0] += row.reserved_micros
            over[1] += actual
    for (project_id, workforce_id, currency), (reserved, actual) in excess.items():
        budgets.check_commit(
            session,
            project_id=project_id,
            workforce_id=workforce_id,
            currency=currency,
            reserved_micros=reserved,
            actual_micros=actual,
        )
    if resized:
        bulk.update_rows(
            session,
            A,
            resized,
            types={"slot": BigId, "actual": sa.BigInteger()},
            where=lambda row: A.c.id == row.slot,
            values=lambda row: {"reserved_micros": row.actual},
        )
    _insert_rows(session, rows_out)
    return total


def _price_key(row: Any) -> tuple[Any, ...]:
    return (row.kind, row.vendor_id, row.card_id, row.reward_micros, row.currency, row.overlap)


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


def _first_for_item(
    session: Session, priced: Sequence[tuple[AcceptedCost, Any, Pricing]]
) -> list[bool]:
    """Whether each answer is its workforce's only accepted one on the item (per-item price).

    The answers are stored already; one earlier in `priced` on the same item counts.
    """
    per_item = [
        price.vendor_id is not None and price.card.price_per_item is not None
        for _, _, price in priced
    ]
    if not any(per_item):
        return per_item
    wanted = [
        answer for (answer, _, _), is_per_item in zip(priced, per_item, strict=True) if is_per_item
    ]
    ours = {answer.answer_id for answer, _, _ in priced}
    taken = {
        (item_id, workforce_id)
        for item_id, workforce_id, answer_id in session.execute(
            sa.select(Answer.item_id, Answer.workforce_id, Answer.id).where(
                bulk.among(session, Answer.item_id, {answer.slot.item_id for answer in wanted}),
                Answer.workforce_id.in_(sorted({answer.slot.workforce_id for answer in wanted})),
                Answer.status == "accepted",
            )
        )
        if answer_id not in ours
    }
    first = []
    for (answer, _, _), is_per_item in zip(priced, per_item, strict=True):
        key = (answer.slot.item_id, answer.slot.workforce_id)
        first.append(is_per_item and key not in taken)
        if is_per_item:
            taken.add(key)
    return first


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
            bulk.among(session, L.c.answer_id, answer_ids),
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
