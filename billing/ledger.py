"""The cost ledger: append-only money movements, and the sums finance reads from them.

Every accepted answer writes entries; nothing is ever edited. A rejected or
excluded answer is taken back by *reversing* its entries (new entries with the
opposite sign), so the history of what was believed when stays on record and
any sum over the ledger stays exact.

Sign convention: a positive amount is money the project spends, a negative
amount money it gets back. Rewards, fees, vendor charges and bonuses are never
negative; refunds are never positive; adjustments and reversals may be either.

All sums here are exact Decimal additions of amounts with at most six decimals,
so a total and the sum of its groups are equal to the micro, not just to the
cent. Rounding to the cent happens once, on the invoice.
"""

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from billing._checks import check_amount, check_currency, check_optional_id, check_utc
from billing.errors import (
    CurrencyMismatchError,
    InvalidBillingInputError,
    InvalidReversalError,
)
from billing.fees import (
    FeeRule,
    InternalPoolCost,
    MTurkFeeRule,
    VendorContract,
    check_same_currency,
    internal_time_cost,
    mturk_assignment_fee,
    mturk_bonus_fee,
    vendor_answer_fee,
)
from billing.money import round_micros
from billing.rates import RateCard, price_for_answer


class EntryKind(enum.StrEnum):
    """What a ledger entry pays for."""

    REWARD = "reward"
    """Paid to a worker for an answer (MTurk reward, internal piece rate or time cost)."""
    PLATFORM_FEE = "platform_fee"
    """Charged by the platform or vendor on top of the work: MTurk commission, vendor fee."""
    VENDOR_CHARGE = "vendor_charge"
    """Charged by a vendor for answers or items at its rate card's price."""
    BONUS = "bonus"
    """Paid to a worker beyond the reward."""
    ADJUSTMENT = "adjustment"
    """A correction by hand, or an invoice minimum top-up."""
    REFUND = "refund"
    """Money a platform or vendor gives back (negative)."""
    REVERSAL = "reversal"
    """Takes back an earlier entry, for a rejected or excluded answer."""


# Kinds whose amount is money spent on work and must not be negative.
_NON_NEGATIVE = frozenset(
    {EntryKind.REWARD, EntryKind.PLATFORM_FEE, EntryKind.VENDOR_CHARGE, EntryKind.BONUS}
)


@dataclass(frozen=True)
class EntryRefs:
    """What an entry is about; every reference is optional.

    Attributes:
        project_id: The project the money was spent for.
        batch_id: The batch the answer came in.
        workforce_id: The workforce that did the work.
        vendor_id: The vendor that bills for it (vendor workforces only).
        worker_id: The worker who was paid.
        answer_id: The answer the money is for.
    """

    project_id: int | None = None
    batch_id: int | None = None
    workforce_id: int | None = None
    vendor_id: int | None = None
    worker_id: int | None = None
    answer_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    """One money movement.

    Attributes:
        kind: What the money is for.
        amount: Signed amount in ``currency``, at most six decimals; positive is spent.
        currency: ISO 4217 code.
        occurred_at: When the movement happened (timezone-aware, stored in UTC); decides
            the day it is reported under and the invoice period it falls in.
        project_id: Reference to the project, or None.
        batch_id: Reference to the batch, or None.
        workforce_id: Reference to the workforce, or None.
        vendor_id: Reference to the vendor that bills for the entry, or None.
        worker_id: Reference to the worker, or None.
        answer_id: Reference to the answer, or None.
        memo: Free text for people.
        is_gold: Whether the entry is for an answer on a gold item (gold overhead).
        reverses_kind: For a reversal, the kind of the entry it takes back.
        reverses_id: For a reversal, the id of the entry it takes back, when it had one.
        id: The stored entry's id; None until the orchestrator stores it.
    """

    kind: EntryKind
    amount: Decimal
    currency: str
    occurred_at: datetime
    project_id: int | None = None
    batch_id: int | None = None
    workforce_id: int | None = None
    vendor_id: int | None = None
    worker_id: int | None = None
    answer_id: int | None = None
    memo: str = ""
    is_gold: bool = False
    reverses_kind: EntryKind | None = None
    reverses_id: int | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        kind = EntryKind(self.kind)
        object.__setattr__(self, "kind", kind)
        amount = check_amount(self.amount, "amount", allow_negative=True)
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "currency", check_currency(self.currency))
        object.__setattr__(self, "occurred_at", check_utc(self.occurred_at, "occurred_at"))
        for field in (
            "project_id",
            "batch_id",
            "workforce_id",
            "vendor_id",
            "worker_id",
            "answer_id",
            "reverses_id",
            "id",
        ):
            check_optional_id(getattr(self, field), field)
        if kind in _NON_NEGATIVE and amount < 0:
            raise InvalidBillingInputError(
                f"a {kind} entry cannot be negative ({amount}); take money back with a "
                "reversal or a refund",
                details={"field": "amount"},
            )
        if kind is EntryKind.REFUND and amount > 0:
            raise InvalidBillingInputError(
                f"a refund is money coming back and must not be positive ({amount})",
                details={"field": "amount"},
            )
        if (kind is EntryKind.REVERSAL) != (self.reverses_kind is not None):
            raise InvalidBillingInputError(
                "reverses_kind is set on reversal entries and only on them",
                details={"field": "reverses_kind"},
            )
        if self.reverses_kind is not None:
            object.__setattr__(self, "reverses_kind", EntryKind(self.reverses_kind))

    @property
    def cost_kind(self) -> EntryKind:
        """The kind this entry counts as in cost reports: a reversal counts as what it reverses."""
        return self.reverses_kind if self.reverses_kind is not None else self.kind

    @property
    def day(self) -> date:
        """The UTC calendar day of ``occurred_at``."""
        return self.occurred_at.date()


def _entry(
    kind: EntryKind,
    amount: Decimal,
    *,
    currency: str,
    occurred_at: datetime,
    refs: EntryRefs,
    memo: str,
    is_gold: bool,
) -> LedgerEntry:
    """Build one entry from its references."""
    return LedgerEntry(
        kind=kind,
        amount=amount,
        currency=currency,
        occurred_at=occurred_at,
        project_id=refs.project_id,
        batch_id=refs.batch_id,
        workforce_id=refs.workforce_id,
        vendor_id=refs.vendor_id,
        worker_id=refs.worker_id,
        answer_id=refs.answer_id,
        memo=memo,
        is_gold=is_gold,
    )


def entries_for_accepted_answer(
    *,
    card: RateCard,
    fee_rule: FeeRule,
    is_gold: bool,
    occurred_at: datetime,
    refs: EntryRefs,
    reward: Decimal | None = None,
    seconds_spent: Decimal | int | None = None,
    is_first_for_item: bool = False,
) -> tuple[LedgerEntry, ...]:
    """Return the entries one accepted answer writes to the ledger.

    The fee rule's type decides the workforce kind:

    * MTurk: the worker's reward and MTurk's fee for one assignment. Gold answers are
      paid like any other (the worker cannot tell), flagged ``is_gold``.
    * Vendor: the vendor's charge at its rate card's price (gold priced or free as the
      card says), the per-item price on the item's first accepted answer when the card
      has one, and the contract's fee on billable charges. Entries carry ``vendor_id``.
    * Internal pool: the piece-rate reward, the time cost when the pool has an hourly
      cost, and the configured fee, if any.

    Zero amounts write no entry: a movement of nothing is not a movement.

    Args:
        card: The workforce's rate card in force when the answer was accepted
            (see :func:`billing.rates.rate_for`).
        fee_rule: The workforce's fee rule; must be in the card's currency.
        is_gold: Whether the answer is on a gold item.
        occurred_at: When the answer was accepted (timezone-aware).
        refs: Project, batch, workforce, vendor, worker and answer references.
        reward: The reward per answer when it differs from the card's ``price_per_answer``;
            an MTurk HIT pays the reward it was created with even if the card changed since.
            Ignored for vendors, which bill at the card's price.
        seconds_spent: Seconds the internal answer took, for the hourly cost.
        is_first_for_item: Whether this is the vendor's first accepted answer on the item,
            which is when a per-item price is charged.

    Returns:
        The entries, in currency ``card.currency``, in the order reward/charge then fee.

    Raises:
        CurrencyMismatchError: The fee rule is in another currency than the card.
        InvalidBillingInputError: A vendor answer without ``vendor_id``, or an internal pool
            with an hourly cost but no ``seconds_spent``.
    """
    check_same_currency(fee_rule, card.currency)
    if isinstance(fee_rule, VendorContract) and refs.vendor_id is None:
        raise InvalidBillingInputError(
            "a vendor answer needs refs.vendor_id, or it can never be invoiced",
            details={"field": "vendor_id"},
        )
    return tuple(
        _entry(
            kind,
            amount,
            currency=card.currency,
            occurred_at=occurred_at,
            refs=refs,
            memo=memo,
            is_gold=is_gold,
        )
        for kind, amount, memo in _answer_amounts(
            card,
            fee_rule,
            is_gold=is_gold,
            reward=reward,
            seconds_spent=seconds_spent,
            is_first_for_item=is_first_for_item,
        )
    )


def answer_cost(
    *,
    card: RateCard,
    fee_rule: FeeRule,
    is_gold: bool,
    reward: Decimal | None = None,
    seconds_spent: Decimal | int | None = None,
    is_first_for_item: bool = False,
) -> Decimal:
    """Return what the entries of one accepted answer come to, without writing them.

    Takes the same arguments as :func:`entries_for_accepted_answer` (minus references
    and time) and applies the same rules, so a reservation made with it matches the
    later commitment to the micro.

    Returns:
        Reward or charge plus fees, in ``card.currency``.
    """
    check_same_currency(fee_rule, card.currency)
    amounts = _answer_amounts(
        card,
        fee_rule,
        is_gold=is_gold,
        reward=reward,
        seconds_spent=seconds_spent,
        is_first_for_item=is_first_for_item,
    )
    return sum((amount for _, amount, _ in amounts), Decimal(0))


def _answer_amounts(
    card: RateCard,
    fee_rule: FeeRule,
    *,
    is_gold: bool,
    reward: Decimal | None,
    seconds_spent: Decimal | int | None,
    is_first_for_item: bool,
) -> list[tuple[EntryKind, Decimal, str]]:
    """Return (kind, amount, memo) for each non-zero movement of one accepted answer."""
    paid = card.price_per_answer if reward is None else check_amount(reward, "reward")
    amounts: list[tuple[EntryKind, Decimal, str]] = []
    if isinstance(fee_rule, MTurkFeeRule):
        fee = mturk_assignment_fee(
            paid, assignments_per_hit=fee_rule.assignments_per_hit, masters=fee_rule.masters
        )
        amounts.append((EntryKind.REWARD, paid, "MTurk reward"))
        amounts.append((EntryKind.PLATFORM_FEE, fee, "MTurk commission"))
    elif isinstance(fee_rule, VendorContract):
        # Vendors bill at their card's price; a reward override is an MTurk/internal notion.
        billable = not is_gold or card.gold_billable
        charge = price_for_answer(card, is_gold=is_gold)
        amounts.append((EntryKind.VENDOR_CHARGE, charge, "gold answer" if is_gold else "answer"))
        if billable and is_first_for_item and card.price_per_item is not None:
            charge += card.price_per_item
            amounts.append((EntryKind.VENDOR_CHARGE, card.price_per_item, "item"))
        if billable:
            amounts.append(
                (EntryKind.PLATFORM_FEE, vendor_answer_fee(fee_rule, charge), "vendor fee")
            )
    elif isinstance(fee_rule, InternalPoolCost):
        amounts.append((EntryKind.REWARD, paid, "internal reward"))
        if fee_rule.hourly_cost is not None:
            if seconds_spent is None:
                raise InvalidBillingInputError(
                    "the internal pool has an hourly cost; seconds_spent is required",
                    details={"field": "seconds_spent"},
                )
            amounts.append(
                (
                    EntryKind.REWARD,
                    internal_time_cost(fee_rule, seconds_spent),
                    f"internal time cost: {seconds_spent} s",
                )
            )
        amounts.append((EntryKind.PLATFORM_FEE, fee_rule.fee_per_answer, "internal fee"))
    else:  # pragma: no cover - FeeRule is a closed union; mypy checks callers
        raise InvalidBillingInputError(f"unknown fee rule {type(fee_rule).__name__}")
    # A movement of nothing is not a movement: zero amounts write no entry.
    return [(kind, amount, memo) for kind, amount, memo in amounts if amount != 0]


def entries_for_bonus(
    bonus: Decimal,
    *,
    fee_rule: FeeRule,
    currency: str,
    occurred_at: datetime,
    refs: EntryRefs,
    memo: str = "bonus",
) -> tuple[LedgerEntry, ...]:
    """Return the entries one bonus payment writes: the bonus and, on MTurk, its fee.

    Args:
        bonus: Amount paid to the worker, in ``currency`` (whole cents on MTurk).
        fee_rule: The workforce's fee rule. Vendor and internal bonuses carry no fee.
        currency: ISO 4217 code of ``bonus``; must match the fee rule.
        occurred_at: When the bonus was paid (timezone-aware).
        refs: References; ``worker_id`` should name the worker paid.
        memo: Free text, e.g. the reason for the bonus.

    Returns:
        The bonus entry and, for MTurk, a platform fee entry (20%, at least $0.01).
    """
    check_same_currency(fee_rule, check_currency(currency))
    amount = check_amount(bonus, "bonus")
    entries = [
        _entry(
            EntryKind.BONUS,
            amount,
            currency=currency,
            occurred_at=occurred_at,
            refs=refs,
            memo=memo,
            is_gold=False,
        )
    ]
    if isinstance(fee_rule, MTurkFeeRule):
        entries.append(
            _entry(
                EntryKind.PLATFORM_FEE,
                mturk_bonus_fee(amount),
                currency=currency,
                occurred_at=occurred_at,
                refs=refs,
                memo="MTurk bonus commission",
                is_gold=False,
            )
        )
    return tuple(entry for entry in entries if entry.amount != 0)


def reverse(
    entries: Iterable[LedgerEntry], *, occurred_at: datetime, memo: str = ""
) -> tuple[LedgerEntry, ...]:
    """Return reversing entries that take back ``entries`` (for a rejected or excluded answer).

    Each reversal has the opposite amount, the same references and gold flag, and
    remembers the kind and id of what it reverses. Whether to reverse is the caller's
    decision: MTurk charges nothing for a rejected assignment, so its reward and fee are
    reversed; an approved MTurk assignment was paid and stays paid even if its answer is
    later excluded from aggregation, so it is not.

    Args:
        entries: The entries to take back, typically all entries of one answer.
        occurred_at: When the answer was rejected or excluded (timezone-aware); the
            reversal lands in that day and invoice period, not the original's.
        memo: Free text, e.g. the reason; defaults to "reversal of <kind>".

    Returns:
        One reversal per entry, in the same order.

    Raises:
        InvalidReversalError: One of the entries is itself a reversal.
    """
    reversals = []
    for entry in entries:
        if entry.kind is EntryKind.REVERSAL:
            raise InvalidReversalError(
                "a reversal cannot be reversed; write a new entry instead",
                details={"id": str(entry.id)},
            )
        reversals.append(
            LedgerEntry(
                kind=EntryKind.REVERSAL,
                amount=-entry.amount,
                currency=entry.currency,
                occurred_at=occurred_at,
                project_id=entry.project_id,
                batch_id=entry.batch_id,
                workforce_id=entry.workforce_id,
                vendor_id=entry.vendor_id,
                worker_id=entry.worker_id,
                answer_id=entry.answer_id,
                memo=memo or f"reversal of {entry.kind}",
                is_gold=entry.is_gold,
                reverses_kind=entry.kind,
                reverses_id=entry.id,
            )
        )
    return tuple(reversals)


def currency_of(entries: Iterable[LedgerEntry]) -> str | None:
    """Return the one currency of ``entries`` (None when empty), or raise CurrencyMismatchError."""
    found: str | None = None
    for entry in entries:
        if found is None:
            found = entry.currency
        elif entry.currency != found:
            raise CurrencyMismatchError(found, entry.currency, context="ledger entries")
    return found


def total(entries: Iterable[LedgerEntry], currency: str | None = None) -> Decimal:
    """Return the exact sum of ``entries``' amounts.

    Args:
        entries: Ledger entries, all in one currency.
        currency: The currency they must be in; None accepts whichever one they share.

    Returns:
        The sum in that currency (``Decimal(0)`` for no entries), not rounded.

    Raises:
        CurrencyMismatchError: The entries are in more than one currency, or not in
            ``currency``.
    """
    items = list(entries)
    found = currency_of(items)
    if currency is not None and found is not None and found != currency:
        raise CurrencyMismatchError(currency, found, context="ledger entries")
    return sum((entry.amount for entry in items), Decimal(0))


GroupKey = Literal["project", "workforce", "vendor", "batch", "worker", "day"]
GroupValue = int | date | None


def _group_value(entry: LedgerEntry, key: GroupKey) -> GroupValue:
    """Return the value of ``entry`` that ``key`` groups by."""
    if key == "project":
        return entry.project_id
    if key == "workforce":
        return entry.workforce_id
    if key == "vendor":
        return entry.vendor_id
    if key == "batch":
        return entry.batch_id
    if key == "worker":
        return entry.worker_id
    if key == "day":
        return entry.day
    raise InvalidBillingInputError(
        f"cannot group by {key!r}; use project, workforce, vendor, batch, worker or day",
        details={"field": "key"},
    )


def group_totals(
    entries: Iterable[LedgerEntry], key: GroupKey, currency: str | None = None
) -> dict[GroupValue, Decimal]:
    """Return the exact total per group; the groups add up to :func:`total` exactly.

    Args:
        entries: Ledger entries, all in one currency.
        key: What to group by: ``"project"``, ``"workforce"``, ``"vendor"``, ``"batch"``,
            ``"worker"`` (their ids) or ``"day"`` (the UTC date of ``occurred_at``).
        currency: The currency they must be in; None accepts whichever one they share.

    Returns:
        Amounts in that currency keyed by group value, sorted by it; entries without the
        reference are grouped under None, which comes last.

    Raises:
        CurrencyMismatchError: The entries are in more than one currency, or not in
            ``currency``.
    """
    items = list(entries)
    total(items, currency)  # raises on mixed currencies before anything is grouped
    sums: dict[GroupValue, Decimal] = {}
    for entry in items:
        value = _group_value(entry, key)
        sums[value] = sums.get(value, Decimal(0)) + entry.amount
    # Group values of one key share a type (int ids, or dates), so they sort.
    ordered = sorted(sums, key=lambda value: (value is None, value or 0))
    return {value: sums[value] for value in ordered}


def cost_per_label(total: Decimal, labelled_items: int) -> Decimal | None:
    """Return ``total / labelled_items`` rounded half-up to the micro, or None with no labels.

    Args:
        total: Project cost in its currency.
        labelled_items: Items that have a final label (not negative).

    Returns:
        The cost per label in the same currency, or None when nothing is labelled yet
        (a cost per label of nothing is undefined, not zero or infinite).
    """
    amount = check_amount(total, "total", allow_negative=True)
    if (
        isinstance(labelled_items, bool)
        or not isinstance(labelled_items, int)
        or labelled_items < 0
    ):
        raise InvalidBillingInputError(
            f"labelled_items must be an int of at least 0, got {labelled_items!r}",
            details={"field": "labelled_items"},
        )
    if labelled_items == 0:
        return None
    return round_micros(amount / labelled_items)


@dataclass(frozen=True)
class CostBreakdown:
    """A project's cost split into work, fees, gold overhead and the rest.

    ``rewards + fees + gold + other == total`` exactly.

    Attributes:
        currency: ISO 4217 code of every amount.
        labelled_items: Items with a final label.
        total: Everything spent, net of reversals and refunds.
        rewards: Rewards, bonuses and vendor charges for answers on ordinary items.
        fees: Platform and vendor fees on ordinary items and bonuses.
        gold: Everything spent on answers on gold items (their rewards, charges and fees):
            the price of measuring quality.
        other: Adjustments and refunds.
        per_label: ``total`` per labelled item, or None with no labels.
        per_label_without_gold: ``total - gold`` per labelled item, or None with no labels.
    """

    currency: str
    labelled_items: int
    total: Decimal
    rewards: Decimal
    fees: Decimal
    gold: Decimal
    other: Decimal
    per_label: Decimal | None
    per_label_without_gold: Decimal | None


_WORK_KINDS = frozenset({EntryKind.REWARD, EntryKind.BONUS, EntryKind.VENDOR_CHARGE})


def cost_breakdown(
    entries: Iterable[LedgerEntry], labelled_items: int, *, currency: str
) -> CostBreakdown:
    """Split a project's ledger into rewards, fees, gold and other, with the cost per label.

    Args:
        entries: The project's ledger entries.
        labelled_items: Items that have a final label.
        currency: The project's currency; every entry must be in it.

    Returns:
        The breakdown; reversals count as the kind they reverse.
    """
    items = list(entries)
    grand_total = total(items, check_currency(currency))
    rewards = fees = gold = other = Decimal(0)
    for entry in items:
        if entry.is_gold:
            gold += entry.amount
        elif entry.cost_kind in _WORK_KINDS:
            rewards += entry.amount
        elif entry.cost_kind is EntryKind.PLATFORM_FEE:
            fees += entry.amount
        else:
            other += entry.amount
    return CostBreakdown(
        currency=currency,
        labelled_items=labelled_items,
        total=grand_total,
        rewards=rewards,
        fees=fees,
        gold=gold,
        other=other,
        per_label=cost_per_label(grand_total, labelled_items),
        per_label_without_gold=cost_per_label(grand_total - gold, labelled_items),
    )
