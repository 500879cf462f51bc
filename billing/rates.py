"""Dated rate cards: what a workforce is paid or charges per answer, and since when.

A workforce keeps a list of rate cards. Each card applies from its
``effective_from`` instant until the next card starts; a new rate therefore
never reprices work already done. Ledger entries are written once, at the
rate in force when the answer was accepted, and never edited, so old answers
keep their old rate.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing._checks import check_amount, check_currency, check_utc
from billing.errors import InvalidRateCardError, NoRateCardError


@dataclass(frozen=True)
class RateCard:
    """The prices of one workforce from one instant on.

    Attributes:
        effective_from: First instant (timezone-aware, stored in UTC) at which the card applies.
        price_per_answer: Amount in ``currency`` per accepted answer: the reward paid to an
            MTurk or internal worker, or the vendor's charge per answer.
        price_per_item: Amount in ``currency`` a vendor charges once per delivered item, on
            top of ``price_per_answer``; None when the vendor does not price by item.
        price_per_gold_answer: Amount a vendor charges per answer on a gold item, when its
            contract prices gold differently; None means gold answers cost
            ``price_per_answer``.
        currency: ISO 4217 code, e.g. ``"USD"``.
        gold_billable: Whether a vendor may bill answers on gold items. MTurk and internal
            workers cannot tell gold from other items and are paid either way, so this
            flag only changes vendor charges.
    """

    effective_from: datetime
    price_per_answer: Decimal
    price_per_item: Decimal | None = None
    price_per_gold_answer: Decimal | None = None
    currency: str = "USD"
    gold_billable: bool = True

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ once, at construction.
        object.__setattr__(self, "effective_from", check_utc(self.effective_from, "effective_from"))
        object.__setattr__(
            self, "price_per_answer", check_amount(self.price_per_answer, "price_per_answer")
        )
        if self.price_per_item is not None:
            object.__setattr__(
                self, "price_per_item", check_amount(self.price_per_item, "price_per_item")
            )
        if self.price_per_gold_answer is not None:
            object.__setattr__(
                self,
                "price_per_gold_answer",
                check_amount(self.price_per_gold_answer, "price_per_gold_answer"),
            )
        object.__setattr__(self, "currency", check_currency(self.currency))


def rate_for(cards: Iterable[RateCard], at: datetime) -> RateCard:
    """Return the rate card in force at ``at``: the latest one starting at or before it.

    Args:
        cards: All rate cards of one workforce, in any order.
        at: The instant that decides the price (timezone-aware), normally the time the
            answer was accepted.

    Returns:
        The card with the greatest ``effective_from`` that is not after ``at``.

    Raises:
        NoRateCardError: No card starts at or before ``at``.
        InvalidRateCardError: Two cards start at the same instant, so the price is ambiguous.
    """
    moment = check_utc(at, "at")
    ordered = sorted(cards, key=lambda card: card.effective_from)
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        if earlier.effective_from == later.effective_from:
            raise InvalidRateCardError(
                f"two rate cards start at {later.effective_from.isoformat()}; "
                "keep one card per start time",
                details={"effective_from": later.effective_from.isoformat()},
            )
    in_force = [card for card in ordered if card.effective_from <= moment]
    if not in_force:
        if ordered:
            hint = f"; the earliest card starts at {ordered[0].effective_from.isoformat()}"
        else:
            hint = "; the workforce has no rate card"
        raise NoRateCardError(
            f"no rate card in force at {moment.isoformat()}{hint}",
            details={"at": moment.isoformat()},
        )
    return in_force[-1]


def price_for_answer(card: RateCard, *, is_gold: bool) -> Decimal:
    """Return what a vendor charges for one answer under ``card``, in ``card.currency``.

    Args:
        card: The rate card in force when the answer was accepted.
        is_gold: Whether the answer is on a gold item.

    Returns:
        ``price_per_answer`` for ordinary items; for gold items zero when the card says
        gold is not billable, else ``price_per_gold_answer`` when set, else
        ``price_per_answer``. Per-item prices are not included.
    """
    if not is_gold:
        return card.price_per_answer
    if not card.gold_billable:
        return Decimal(0)
    if card.price_per_gold_answer is not None:
        return card.price_per_gold_answer
    return card.price_per_answer
