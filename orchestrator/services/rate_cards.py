"""Rate cards: store a workforce's dated prices and fee terms, and price work with them.

A workforce's kind decides its fee rule (billing.fees): the internal pool's
optional fee per answer and hourly cost, MTurk's commission (Masters or not), a
vendor's contract. The rule's terms are kept on the rate card as data
(`RateCard.fee_rule`, amounts as decimal strings), so a new card can change the
terms from its start on, like the prices.

Where no card is in force, the internal pool and MTurk pay the project's reward
with no extra fee (MTurk still charges its commission); a vendor cannot be priced
without a card, so dispatching to it or storing its answers fails with
`no_rate_card`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing.errors import CurrencyMismatchError
from billing.fees import FeeRule, InternalPoolCost, MTurkFeeRule, VendorContract
from billing.money import format_amount, from_micros, parse_amount, to_micros
from billing.rates import RateCard as CardTerms
from billing.rates import rate_for
from orchestrator.db import utcnow
from orchestrator.errors import ConflictError, InvalidInputError
from orchestrator.models import LedgerEntry, Project, RateCard, Workforce
from orchestrator.services.workforces import get_workforce

# The start of time for a card made up from the project's reward.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Fee terms each kind of workforce accepts (see billing.fees); money as decimal strings.
FEE_TERMS = {
    "internal": {"fee_per_answer", "hourly_cost", "expected_seconds"},
    "mturk": {"masters", "assignments_per_hit"},
    "vendor": {"fee_rate", "fee_per_answer", "minimum_per_invoice"},
}
MONEY_TERMS = {"fee_per_answer", "hourly_cost", "fee_rate", "minimum_per_invoice"}
# Time an hourly-costed internal answer is expected to take, when the card does not say.
DEFAULT_EXPECTED_SECONDS = 600


@dataclass(frozen=True)
class Pricing:
    """Everything needed to price one answer of one workforce for one project.

    Attributes:
        card: The rate card in force (made up from the project's reward when there is none).
        fee_rule: The workforce's fee rule in the card's currency.
        rate_card_id: The stored card's id, None for a made-up card.
        reward: The reward to pass to billing (MTurk pays the project's reward), or None.
        vendor_id: The vendor that bills for the workforce, if any.
        expected_seconds: For an hourly-costed pool, the time to reserve per answer.
    """

    card: CardTerms
    fee_rule: FeeRule
    rate_card_id: int | None
    reward: Decimal | None
    vendor_id: int | None
    expected_seconds: int | None


def fee_rule_for(kind: str, terms: Mapping[str, Any], *, currency: str, overlap: int) -> FeeRule:
    """Build a workforce kind's fee rule from the terms stored on its rate card."""

    def money(name: str) -> Decimal:
        return parse_amount(terms.get(name) or "0")

    if kind == "mturk":
        return MTurkFeeRule(
            assignments_per_hit=int(terms.get("assignments_per_hit") or overlap),
            masters=bool(terms.get("masters", False)),
        )
    if kind == "vendor":
        return VendorContract(
            currency=currency,
            fee_rate=money("fee_rate"),
            fee_per_answer=money("fee_per_answer"),
            minimum_per_invoice=money("minimum_per_invoice"),
        )
    hourly = terms.get("hourly_cost")
    return InternalPoolCost(
        currency=currency,
        fee_per_answer=money("fee_per_answer"),
        hourly_cost=None if hourly is None else parse_amount(hourly),
    )


def card_terms(row: Any) -> CardTerms:
    """Convert a stored rate card (ORM object or row) to billing's RateCard."""

    def optional(micros: int | None) -> Decimal | None:
        return None if micros is None else from_micros(micros)

    return CardTerms(
        effective_from=row.effective_from,
        price_per_answer=from_micros(row.price_per_answer_micros),
        price_per_item=optional(row.price_per_item_micros),
        price_per_gold_answer=optional(row.price_per_gold_answer_micros),
        currency=row.currency,
        gold_billable=row.gold_billable,
    )


CARD_TABLE = RateCard.__table__


def latest_card_id(workforce_id: Any, at: datetime) -> sa.ScalarSelect[Any]:
    """A scalar subquery: the id of the workforce's card in force at `at`."""
    # An alias, so the subquery never correlates with a rate_card of the outer query.
    card = CARD_TABLE.alias("card_in_force")
    return (
        sa.select(card.c.id)
        .where(card.c.workforce_id == workforce_id, card.c.effective_from <= at)
        .order_by(card.c.effective_from.desc())
        .limit(1)
        .scalar_subquery()
    )


CARD_COLUMNS = [column.label(f"card_{column.name}") for column in CARD_TABLE.c]


@dataclass(frozen=True)
class StoredCard:
    """The stored columns of a rate card, read with Core (no ORM load on hot paths)."""

    id: int
    effective_from: datetime
    currency: str
    price_per_answer_micros: int
    price_per_item_micros: int | None
    price_per_gold_answer_micros: int | None
    gold_billable: bool
    fee_rule: dict[str, Any]


def card_from_row(row: Any) -> StoredCard | None:
    """Pick the `card_*` columns (see CARD_COLUMNS) out of a row; None when no card joined."""
    if row.card_id is None:
        return None
    return StoredCard(
        id=row.card_id,
        effective_from=row.card_effective_from,
        currency=row.card_currency,
        price_per_answer_micros=row.card_price_per_answer_micros,
        price_per_item_micros=row.card_price_per_item_micros,
        price_per_gold_answer_micros=row.card_price_per_gold_answer_micros,
        gold_billable=row.card_gold_billable,
        fee_rule=row.card_fee_rule or {},
    )


def pricing(
    *,
    kind: str,
    vendor_id: int | None,
    card: Any | None,
    reward_micros: int,
    currency: str,
    overlap: int,
    at: datetime,
) -> Pricing:
    """Price work of a workforce for a project at `at`, from the card in force (or none).

    Raises:
        NoRateCardError: A vendor workforce without a card in force at `at`.
        CurrencyMismatchError: The card is in another currency than the project.
    """
    if card is None:
        if kind == "vendor":
            rate_for([], at)  # raises NoRateCardError with billing's message
        terms = CardTerms(
            effective_from=EPOCH, price_per_answer=from_micros(reward_micros), currency=currency
        )
        fee_terms: Mapping[str, Any] = {}
        card_id = None
    else:
        terms = rate_for([card_terms(card)], at)
        fee_terms = card.fee_rule or {}
        card_id = card.id
    if terms.currency != currency:
        raise CurrencyMismatchError(currency, terms.currency, context="rate card")
    hourly = kind == "internal" and fee_terms.get("hourly_cost") is not None
    return Pricing(
        card=terms,
        fee_rule=fee_rule_for(kind, fee_terms, currency=terms.currency, overlap=overlap),
        rate_card_id=card_id,
        reward=from_micros(reward_micros) if kind == "mturk" else None,
        vendor_id=vendor_id if kind == "vendor" else None,
        expected_seconds=int(fee_terms.get("expected_seconds") or DEFAULT_EXPECTED_SECONDS)
        if hourly
        else None,
    )


def pricing_for(
    session: Session, *, project_id: int, workforce_id: int, at: datetime | None = None
) -> Pricing:
    """Load a project's and a workforce's pricing at `at` (default now) in one query."""
    moment = at or utcnow()
    row = session.execute(
        sa.select(
            Project.reward_micros,
            Project.currency,
            Project.overlap,
            Workforce.kind,
            Workforce.vendor_id,
            *CARD_COLUMNS,
        )
        .select_from(Project)
        .join(Workforce, Workforce.id == workforce_id)
        .outerjoin(CARD_TABLE, CARD_TABLE.c.id == latest_card_id(Workforce.id, moment))
        .where(Project.id == project_id)
    ).one()
    return pricing_from_row(row, moment)


def pricing_from_row(row: Any, at: datetime) -> Pricing:
    """Price from a row of the project's reward, currency and overlap, the workforce's kind
    and vendor, and the card in force (`CARD_COLUMNS`, all null without one)."""
    return pricing(
        kind=row.kind,
        vendor_id=row.vendor_id,
        card=card_from_row(row),
        reward_micros=row.reward_micros,
        currency=row.currency,
        overlap=row.overlap,
        at=at,
    )


def create_rate_card(
    session: Session,
    *,
    workforce_id: int,
    price_per_answer: Decimal,
    currency: str = "USD",
    effective_from: datetime | None = None,
    price_per_item: Decimal | None = None,
    price_per_gold_answer: Decimal | None = None,
    gold_billable: bool = True,
    fees: Mapping[str, Any] | None = None,
) -> RateCard:
    """Add a dated rate card to a workforce; it applies from `effective_from` (default now).

    A card may not start before an answer already on the ledger at the workforce's
    old rate, because ledger entries are never repriced.
    """
    workforce = get_workforce(session, workforce_id)
    start = effective_from or utcnow()
    terms = _fee_terms(workforce.kind, dict(fees or {}))
    card = CardTerms(
        effective_from=start,
        price_per_answer=price_per_answer,
        price_per_item=price_per_item,
        price_per_gold_answer=price_per_gold_answer,
        currency=currency,
        gold_billable=gold_billable,
    )
    # Build the fee rule now, so bad terms (MTurk in EUR, ...) fail here, not on an answer.
    rule = fee_rule_for(workforce.kind, terms, currency=currency, overlap=1)
    if isinstance(rule, MTurkFeeRule) and currency != "USD":
        raise CurrencyMismatchError("USD", currency, context="MTurk rate card")
    later = session.scalar(
        sa.select(sa.func.max(LedgerEntry.occurred_at)).where(
            LedgerEntry.workforce_id == workforce.id, LedgerEntry.answer_id.is_not(None)
        )
    )
    if later is not None and later >= card.effective_from:
        raise InvalidInputError(
            "a rate card cannot start before answers already on the ledger; they keep their rate",
            details={"effective_from": [f"must be after {later.isoformat()}"]},
        )
    clash = session.scalar(
        sa.select(RateCard.id).where(
            RateCard.workforce_id == workforce.id, RateCard.effective_from == card.effective_from
        )
    )
    if clash is not None:
        raise ConflictError(
            f"rate card {clash} already starts at {card.effective_from.isoformat()}",
            details={"effective_from": ["taken: one card per start time"]},
        )
    row = RateCard(
        workforce_id=workforce.id,
        effective_from=card.effective_from,
        currency=card.currency,
        price_per_answer_micros=to_micros(card.price_per_answer),
        price_per_item_micros=None if price_per_item is None else to_micros(price_per_item),
        price_per_gold_answer_micros=None
        if price_per_gold_answer is None
        else to_micros(price_per_gold_answer),
        gold_billable=card.gold_billable,
        fee_rule={"kind": workforce.kind, **terms},
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def _fee_terms(kind: str, fees: dict[str, Any]) -> dict[str, Any]:
    """Check a card's fee terms against the workforce kind; store money as strings."""
    allowed = FEE_TERMS[kind]
    unknown = sorted(set(fees) - allowed)
    if unknown:
        raise InvalidInputError(
            f"{kind} workforces take no fee term {unknown[0]!r}",
            details={
                f"fees.{name}": [f"not a {kind} term; use {sorted(allowed)}"] for name in unknown
            },
        )
    return {
        name: format_amount(value) if name in MONEY_TERMS else value
        for name, value in fees.items()
        if value is not None
    }


def list_rate_cards(session: Session, workforce_id: int) -> list[RateCard]:
    """Return a workforce's rate cards, oldest start first."""
    get_workforce(session, workforce_id)
    return list(
        session.scalars(
            sa.select(RateCard)
            .where(RateCard.workforce_id == workforce_id)
            .order_by(RateCard.effective_from)
        )
    )


def fee_terms_of(card: RateCard) -> dict[str, Any]:
    """Return a stored card's fee terms without the kind marker."""
    return {key: value for key, value in (card.fee_rule or {}).items() if key != "kind"}
