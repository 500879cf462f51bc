"""Dated rate cards: which card is in force when, and what a gold answer costs."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billing.errors import (
    InvalidAmountError,
    InvalidBillingInputError,
    InvalidRateCardError,
    NoRateCardError,
)
from billing.fees import MTurkFeeRule
from billing.ledger import EntryRefs, entries_for_accepted_answer, total
from billing.rates import RateCard, price_for_answer, rate_for

D = Decimal
JAN = datetime(2024, 1, 1, tzinfo=UTC)
FEB = datetime(2024, 2, 1, tzinfo=UTC)
MAR = datetime(2024, 3, 1, tzinfo=UTC)


def card(start: datetime, price: str, **overrides: object) -> RateCard:
    return RateCard(effective_from=start, price_per_answer=D(price), **overrides)  # type: ignore[arg-type]


CARDS = [card(MAR, "0.30"), card(JAN, "0.10"), card(FEB, "0.20")]  # any order


@pytest.mark.parametrize(
    ("at", "price"),
    [
        (JAN, "0.10"),  # the first instant of a card is under that card
        (FEB - timedelta(microseconds=1), "0.10"),  # the last instant before the next card
        (FEB, "0.20"),  # a new rate applies from its start
        (datetime(2024, 2, 15, 12, tzinfo=UTC), "0.20"),
        (datetime(2030, 1, 1, tzinfo=UTC), "0.30"),  # the latest card stays in force
    ],
)
def test_rate_for_picks_the_latest_card_started(at: datetime, price: str) -> None:
    assert rate_for(CARDS, at).price_per_answer == D(price)


def test_rate_for_compares_instants_not_wall_clocks() -> None:
    # 00:30 on 1 February in UTC+2 is still 31 January in UTC: the January card applies.
    plus_two = timezone(timedelta(hours=2))
    assert rate_for(CARDS, datetime(2024, 2, 1, 0, 30, tzinfo=plus_two)).price_per_answer == D(
        "0.10"
    )


def test_rate_card_stores_effective_from_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    stored = card(datetime(2024, 2, 1, 2, tzinfo=plus_two), "0.20")
    assert stored.effective_from == FEB
    assert stored.effective_from.tzinfo is UTC


def test_no_card_before_the_first_one_is_a_clear_error() -> None:
    with pytest.raises(NoRateCardError) as caught:
        rate_for(CARDS, datetime(2023, 12, 31, tzinfo=UTC))
    assert caught.value.code == "no_rate_card"
    assert "2023-12-31" in str(caught.value)
    assert "earliest card starts at 2024-01-01" in str(caught.value)


def test_no_card_at_all_is_a_clear_error() -> None:
    with pytest.raises(NoRateCardError, match="has no rate card"):
        rate_for([], JAN)


def test_two_cards_with_the_same_start_are_ambiguous() -> None:
    with pytest.raises(InvalidRateCardError, match="same instant|start at"):
        rate_for([card(JAN, "0.10"), card(JAN, "0.20")], FEB)


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidBillingInputError, match="timezone-aware"):
        rate_for(CARDS, datetime(2024, 2, 1))
    with pytest.raises(InvalidBillingInputError):
        card(datetime(2024, 2, 1), "0.10")


@pytest.mark.parametrize(
    "overrides",
    [
        {"price_per_answer": 0.1},
        {"price_per_answer": D("-0.01")},
        {"price_per_answer": D("0.0000001")},
        {"price_per_item": D("-1")},
        {"price_per_gold_answer": "0.10"},
    ],
)
def test_rate_card_refuses_bad_prices(overrides: dict[str, object]) -> None:
    fields: dict[str, object] = {"effective_from": JAN, "price_per_answer": D("0.10")}
    fields.update(overrides)
    with pytest.raises(InvalidAmountError):
        RateCard(**fields)  # type: ignore[arg-type]


def test_rate_card_refuses_bad_currency() -> None:
    with pytest.raises(InvalidBillingInputError, match="currency"):
        card(JAN, "0.10", currency="usd")


def test_price_for_answer_on_gold_items() -> None:
    plain = card(JAN, "0.10")
    assert price_for_answer(plain, is_gold=False) == D("0.10")
    assert price_for_answer(plain, is_gold=True) == D("0.10")  # gold at the normal price
    gold_priced = card(JAN, "0.10", price_per_gold_answer=D("0.04"))
    assert price_for_answer(gold_priced, is_gold=True) == D("0.04")
    assert price_for_answer(gold_priced, is_gold=False) == D("0.10")
    free_gold = card(JAN, "0.10", price_per_gold_answer=D("0.04"), gold_billable=False)
    assert price_for_answer(free_gold, is_gold=True) == 0


def test_old_answers_keep_the_rate_they_were_accepted_under() -> None:
    cards = [card(JAN, "0.10"), card(FEB, "0.20")]
    rule = MTurkFeeRule(assignments_per_hit=3)
    refs = EntryRefs(project_id=1)

    def accept(at: datetime) -> Decimal:
        in_force = rate_for(cards, at)
        return total(
            entries_for_accepted_answer(
                card=in_force, fee_rule=rule, is_gold=False, occurred_at=at, refs=refs
            )
        )

    january = accept(datetime(2024, 1, 31, 23, 59, tzinfo=UTC))
    assert january == D("0.12")  # $0.10 + $0.02 fee
    # A card added later does not reprice an answer accepted before it starts...
    cards.append(card(MAR, "0.50"))
    assert accept(datetime(2024, 1, 31, 23, 59, tzinfo=UTC)) == january
    # ...and answers accepted after it pay the new rate.
    assert accept(datetime(2024, 3, 2, tzinfo=UTC)) == D("0.60")
