"""The cost ledger: entries per accepted answer, reversals, totals, groups and cost per label."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.errors import (
    CurrencyMismatchError,
    InvalidAmountError,
    InvalidBillingInputError,
    InvalidReversalError,
)
from billing.fees import InternalPoolCost, MTurkFeeRule, VendorContract
from billing.ledger import (
    EntryKind,
    EntryRefs,
    GroupKey,
    LedgerEntry,
    answer_cost,
    cost_breakdown,
    cost_per_label,
    entries_for_accepted_answer,
    entries_for_bonus,
    group_totals,
    reverse,
    total,
)
from billing.rates import RateCard
from tests.billing.campaigns import CURRENCY, Campaign, campaigns, play

D = Decimal
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
REFS = EntryRefs(project_id=1, batch_id=2, workforce_id=3, worker_id=4, answer_id=5)
VENDOR_REFS = replace(REFS, vendor_id=7)


def usd_card(price: str, **overrides: object) -> RateCard:
    return RateCard(effective_from=T0 - timedelta(days=30), price_per_answer=D(price), **overrides)  # type: ignore[arg-type]


def entry(kind: EntryKind, amount: str, **overrides: object) -> LedgerEntry:
    fields: dict[str, object] = {
        "kind": kind,
        "amount": D(amount),
        "currency": "USD",
        "occurred_at": T0,
    }
    fields.update(overrides)
    return LedgerEntry(**fields)  # type: ignore[arg-type]


def amounts(entries: tuple[LedgerEntry, ...]) -> list[tuple[EntryKind, Decimal]]:
    return [(e.kind, e.amount) for e in entries]


# --- Accepted answers -----------------------------------------------------------------


def test_mturk_answer_writes_reward_and_commission() -> None:
    written = entries_for_accepted_answer(
        card=usd_card("0.50"),
        fee_rule=MTurkFeeRule(assignments_per_hit=9),
        is_gold=False,
        occurred_at=T0,
        refs=REFS,
    )
    assert amounts(written) == [(EntryKind.REWARD, D("0.50")), (EntryKind.PLATFORM_FEE, D("0.10"))]
    reward = written[0]
    assert (reward.project_id, reward.batch_id, reward.workforce_id) == (1, 2, 3)
    assert (reward.worker_id, reward.answer_id, reward.vendor_id) == (4, 5, None)
    assert reward.currency == "USD" and reward.occurred_at == T0 and not reward.is_gold


def test_mturk_large_hit_and_masters_raise_the_commission() -> None:
    written = entries_for_accepted_answer(
        card=usd_card("0.50"),
        fee_rule=MTurkFeeRule(assignments_per_hit=10, masters=True),
        is_gold=False,
        occurred_at=T0,
        refs=REFS,
    )
    assert amounts(written)[1] == (EntryKind.PLATFORM_FEE, D("0.23"))  # 45% of 0.50 = 0.225


def test_mturk_gold_answers_are_paid_and_flagged() -> None:
    written = entries_for_accepted_answer(
        card=usd_card("0.50", gold_billable=False),  # vendor-only flag: MTurk still pays
        fee_rule=MTurkFeeRule(assignments_per_hit=3),
        is_gold=True,
        occurred_at=T0,
        refs=REFS,
    )
    assert amounts(written) == [(EntryKind.REWARD, D("0.50")), (EntryKind.PLATFORM_FEE, D("0.10"))]
    assert all(e.is_gold for e in written)


def test_mturk_pays_the_hit_reward_over_the_card_price() -> None:
    written = entries_for_accepted_answer(
        card=usd_card("0.50"),
        fee_rule=MTurkFeeRule(assignments_per_hit=3),
        is_gold=False,
        occurred_at=T0,
        refs=REFS,
        reward=D("0.40"),
    )
    assert amounts(written) == [(EntryKind.REWARD, D("0.40")), (EntryKind.PLATFORM_FEE, D("0.08"))]


def test_mturk_in_another_currency_is_refused() -> None:
    with pytest.raises(CurrencyMismatchError) as caught:
        entries_for_accepted_answer(
            card=usd_card("0.50", currency="EUR"),
            fee_rule=MTurkFeeRule(assignments_per_hit=1),
            is_gold=False,
            occurred_at=T0,
            refs=REFS,
        )
    assert caught.value.code == "currency_mismatch"
    assert caught.value.details == {"expected": "USD", "found": "EUR"}


def test_vendor_answer_writes_charge_and_contract_fee() -> None:
    written = entries_for_accepted_answer(
        card=usd_card("0.05"),
        fee_rule=VendorContract(currency="USD", fee_rate=D("0.10"), fee_per_answer=D("0.002")),
        is_gold=False,
        occurred_at=T0,
        refs=VENDOR_REFS,
    )
    assert amounts(written) == [
        (EntryKind.VENDOR_CHARGE, D("0.05")),
        (EntryKind.PLATFORM_FEE, D("0.007")),
    ]
    assert all(e.vendor_id == 7 for e in written)


def test_vendor_per_item_price_is_charged_on_the_first_answer_only() -> None:
    card = usd_card("0.05", price_per_item=D("0.20"))
    rule = VendorContract(currency="USD", fee_rate=D("0.10"))

    def accept(first: bool) -> list[tuple[EntryKind, Decimal]]:
        return amounts(
            entries_for_accepted_answer(
                card=card,
                fee_rule=rule,
                is_gold=False,
                occurred_at=T0,
                refs=VENDOR_REFS,
                is_first_for_item=first,
            )
        )

    assert accept(True) == [
        (EntryKind.VENDOR_CHARGE, D("0.05")),
        (EntryKind.VENDOR_CHARGE, D("0.20")),
        (EntryKind.PLATFORM_FEE, D("0.025")),  # 10% of both charges
    ]
    assert accept(False) == [
        (EntryKind.VENDOR_CHARGE, D("0.05")),
        (EntryKind.PLATFORM_FEE, D("0.005")),
    ]


def test_vendor_gold_at_gold_price_or_not_billed_at_all() -> None:
    rule = VendorContract(currency="USD", fee_rate=D("0.10"), fee_per_answer=D("0.01"))

    def accept(card: RateCard) -> list[tuple[EntryKind, Decimal]]:
        return amounts(
            entries_for_accepted_answer(
                card=card,
                fee_rule=rule,
                is_gold=True,
                occurred_at=T0,
                refs=VENDOR_REFS,
                is_first_for_item=True,
            )
        )

    gold_priced = usd_card("0.10", price_per_gold_answer=D("0.04"))
    assert accept(gold_priced) == [
        (EntryKind.VENDOR_CHARGE, D("0.04")),
        (EntryKind.PLATFORM_FEE, D("0.014")),
    ]
    not_billable = usd_card("0.10", price_per_item=D("1.00"), gold_billable=False)
    assert accept(not_billable) == []  # no charge, no item charge, no fee


def test_vendor_answer_needs_a_vendor_id() -> None:
    with pytest.raises(InvalidBillingInputError, match="vendor_id"):
        entries_for_accepted_answer(
            card=usd_card("0.05"),
            fee_rule=VendorContract(currency="USD"),
            is_gold=False,
            occurred_at=T0,
            refs=REFS,
        )


def test_internal_pool_writes_reward_only_by_default() -> None:
    written = entries_for_accepted_answer(
        card=usd_card("0.03"), fee_rule=InternalPoolCost(), is_gold=False, occurred_at=T0, refs=REFS
    )
    assert amounts(written) == [(EntryKind.REWARD, D("0.03"))]


def test_internal_pool_adds_time_cost_and_configured_fee() -> None:
    written = entries_for_accepted_answer(
        card=usd_card("0"),
        fee_rule=InternalPoolCost(hourly_cost=D("18.00"), fee_per_answer=D("0.01")),
        is_gold=False,
        occurred_at=T0,
        refs=REFS,
        seconds_spent=45,
    )
    # No piece rate (zero writes nothing); 45 s at $18/h is $0.225.
    assert amounts(written) == [(EntryKind.REWARD, D("0.225")), (EntryKind.PLATFORM_FEE, D("0.01"))]


def test_internal_hourly_cost_needs_the_time_spent() -> None:
    with pytest.raises(InvalidBillingInputError, match="seconds_spent"):
        entries_for_accepted_answer(
            card=usd_card("0"),
            fee_rule=InternalPoolCost(hourly_cost=D("18")),
            is_gold=False,
            occurred_at=T0,
            refs=REFS,
        )


def test_answer_cost_matches_the_entries_written() -> None:
    card = usd_card("0.05", price_per_item=D("0.20"))
    rule = VendorContract(currency="USD", fee_rate=D("0.125"), fee_per_answer=D("0.001"))
    written = entries_for_accepted_answer(
        card=card,
        fee_rule=rule,
        is_gold=False,
        occurred_at=T0,
        refs=VENDOR_REFS,
        is_first_for_item=True,
    )
    assert (
        answer_cost(card=card, fee_rule=rule, is_gold=False, is_first_for_item=True)
        == total(written)
        == D("0.28225")
    )


# --- Bonuses --------------------------------------------------------------------------


def test_mturk_bonus_writes_bonus_and_its_fee() -> None:
    written = entries_for_bonus(
        D("0.02"),
        fee_rule=MTurkFeeRule(assignments_per_hit=10, masters=True),
        currency="USD",
        occurred_at=T0,
        refs=REFS,
    )
    # 20% only (no large-HIT or Masters part), and the $0.01 minimum.
    assert amounts(written) == [(EntryKind.BONUS, D("0.02")), (EntryKind.PLATFORM_FEE, D("0.01"))]


def test_vendor_and_internal_bonuses_carry_no_fee() -> None:
    for rule in (VendorContract(currency="USD", fee_rate=D("0.5")), InternalPoolCost()):
        written = entries_for_bonus(
            D("1.00"), fee_rule=rule, currency="USD", occurred_at=T0, refs=VENDOR_REFS
        )
        assert amounts(written) == [(EntryKind.BONUS, D("1.00"))]


# --- Entries --------------------------------------------------------------------------


def test_entries_refuse_wrong_signs() -> None:
    for kind in (
        EntryKind.REWARD,
        EntryKind.PLATFORM_FEE,
        EntryKind.VENDOR_CHARGE,
        EntryKind.BONUS,
    ):
        with pytest.raises(InvalidBillingInputError, match="cannot be negative"):
            entry(kind, "-0.01")
    with pytest.raises(InvalidBillingInputError, match="refund"):
        entry(EntryKind.REFUND, "0.01")
    assert entry(EntryKind.REFUND, "-0.01").amount == D("-0.01")
    assert entry(EntryKind.ADJUSTMENT, "-3").amount == D("-3")


def test_entries_refuse_floats_sub_micro_amounts_and_naive_times() -> None:
    with pytest.raises(InvalidAmountError):
        LedgerEntry(kind=EntryKind.REWARD, amount=0.1, currency="USD", occurred_at=T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError):
        entry(EntryKind.REWARD, "0.0000001")
    with pytest.raises(InvalidBillingInputError):
        entry(EntryKind.REWARD, "0.10", occurred_at=datetime(2024, 5, 1))


def test_only_reversals_say_what_they_reverse() -> None:
    with pytest.raises(InvalidBillingInputError):
        entry(EntryKind.REVERSAL, "-0.10")
    with pytest.raises(InvalidBillingInputError):
        entry(EntryKind.REWARD, "0.10", reverses_kind=EntryKind.REWARD)


# --- Reversals ------------------------------------------------------------------------


def test_reverse_writes_opposite_entries_and_nets_to_zero() -> None:
    written = tuple(
        replace(e, id=i)
        for i, e in enumerate(
            entries_for_accepted_answer(
                card=usd_card("0.50"),
                fee_rule=MTurkFeeRule(assignments_per_hit=10),
                is_gold=True,
                occurred_at=T0,
                refs=REFS,
            ),
            start=100,
        )
    )
    later = T0 + timedelta(days=3)
    reversals = reverse(written, occurred_at=later, memo="rejected: failed gold")
    assert [(r.kind, r.amount, r.reverses_kind, r.reverses_id) for r in reversals] == [
        (EntryKind.REVERSAL, D("-0.50"), EntryKind.REWARD, 100),
        (EntryKind.REVERSAL, D("-0.20"), EntryKind.PLATFORM_FEE, 101),
    ]
    assert all(r.occurred_at == later and r.is_gold and r.answer_id == 5 for r in reversals)
    assert all(r.memo == "rejected: failed gold" for r in reversals)
    assert reversals[0].cost_kind is EntryKind.REWARD
    assert total(written + reversals) == 0
    # The originals are untouched: reversing never edits.
    assert written[0].amount == D("0.50") and written[0].kind is EntryKind.REWARD


def test_a_reversal_cannot_be_reversed() -> None:
    reversal = reverse([entry(EntryKind.REWARD, "0.10")], occurred_at=T0)
    with pytest.raises(InvalidReversalError):
        reverse(reversal, occurred_at=T0)


# --- Totals and groups ----------------------------------------------------------------


def test_total_is_exact_and_checks_currency() -> None:
    entries = [entry(EntryKind.REWARD, "0.000001") for _ in range(3)]
    assert total(entries) == D("0.000003")
    assert total([]) == 0
    with pytest.raises(CurrencyMismatchError):
        total(entries + [entry(EntryKind.REWARD, "1", currency="EUR")])
    with pytest.raises(CurrencyMismatchError):
        total(entries, "EUR")


def test_group_totals_by_reference_with_missing_references_last() -> None:
    entries = [
        entry(EntryKind.REWARD, "1.00", project_id=2),
        entry(EntryKind.REWARD, "0.50", project_id=1),
        entry(EntryKind.ADJUSTMENT, "0.25"),
        entry(EntryKind.REWARD, "0.10", project_id=2),
    ]
    grouped = group_totals(entries, "project")
    assert list(grouped.items()) == [(1, D("0.50")), (2, D("1.10")), (None, D("0.25"))]
    assert sum(grouped.values()) == total(entries)


def test_group_totals_by_utc_day() -> None:
    plus_ten = timezone(timedelta(hours=10))
    entries = [
        # 08:00 on 2 May in UTC+10 is 22:00 on 1 May in UTC.
        entry(EntryKind.REWARD, "1.00", occurred_at=datetime(2024, 5, 2, 8, tzinfo=plus_ten)),
        entry(EntryKind.REWARD, "2.00", occurred_at=datetime(2024, 5, 2, 0, 0, tzinfo=UTC)),
    ]
    assert group_totals(entries, "day") == {
        date(2024, 5, 1): D("1.00"),
        date(2024, 5, 2): D("2.00"),
    }


def test_group_totals_refuses_unknown_keys_and_mixed_currencies() -> None:
    with pytest.raises(InvalidBillingInputError, match="cannot group by"):
        group_totals([entry(EntryKind.REWARD, "1")], "colour")  # type: ignore[arg-type]
    with pytest.raises(CurrencyMismatchError):
        group_totals(
            [entry(EntryKind.REWARD, "1"), entry(EntryKind.REWARD, "1", currency="EUR")], "worker"
        )


# --- Cost per label -------------------------------------------------------------------


def test_cost_per_label() -> None:
    assert cost_per_label(D("10.00"), 4) == D("2.5")
    assert cost_per_label(D("10.00"), 3) == D("3.333333")
    assert cost_per_label(D("20.00"), 3) == D("6.666667")  # half-up at the micro
    assert cost_per_label(D("10.00"), 0) is None
    with pytest.raises(InvalidBillingInputError):
        cost_per_label(D("1"), -1)


def test_cost_breakdown_splits_rewards_fees_gold_and_other() -> None:
    rule = MTurkFeeRule(assignments_per_hit=3)
    card = usd_card("0.50")
    ordinary = [
        e
        for _ in range(3)
        for e in entries_for_accepted_answer(
            card=card, fee_rule=rule, is_gold=False, occurred_at=T0, refs=REFS
        )
    ]
    gold = list(
        entries_for_accepted_answer(
            card=card, fee_rule=rule, is_gold=True, occurred_at=T0, refs=REFS
        )
    )
    rejected = list(
        entries_for_accepted_answer(
            card=card, fee_rule=rule, is_gold=False, occurred_at=T0, refs=REFS
        )
    )
    rejected += reverse(rejected, occurred_at=T0)
    bonus = list(
        entries_for_bonus(D("1.00"), fee_rule=rule, currency="USD", occurred_at=T0, refs=REFS)
    )
    refund = [entry(EntryKind.REFUND, "-0.30")]

    breakdown = cost_breakdown(ordinary + gold + rejected + bonus + refund, 3, currency="USD")
    assert breakdown.rewards == D("2.50")  # 3 × 0.50 + 1.00 bonus
    assert breakdown.fees == D("0.50")  # 3 × 0.10 + 0.20 bonus fee
    assert breakdown.gold == D("0.60")
    assert breakdown.other == D("-0.30")
    assert breakdown.total == D("3.30")
    assert breakdown.per_label == D("1.1")
    assert breakdown.per_label_without_gold == D("0.9")


def test_cost_breakdown_with_nothing_labelled() -> None:
    breakdown = cost_breakdown([], 0, currency="EUR")
    assert breakdown.total == 0 and breakdown.per_label is None
    with pytest.raises(CurrencyMismatchError):
        cost_breakdown([entry(EntryKind.REWARD, "1")], 1, currency="EUR")


# --- Random campaigns -----------------------------------------------------------------

KEYS: tuple[GroupKey, ...] = ("project", "workforce", "vendor", "batch", "worker", "day")


@settings(max_examples=150, deadline=None)
@given(campaign=campaigns())
def test_random_campaign_ledger_reconciles(campaign: Campaign) -> None:
    played = play(campaign)
    entries = played.entries
    grand_total = total(entries, CURRENCY)

    # The ledger comes to what the accepted (not rejected) answers and bonuses cost.
    assert grand_total == played.expected_total
    # Every grouping adds up to the total exactly (not just to the cent).
    for key in KEYS:
        assert sum(group_totals(entries, key).values(), D(0)) == grand_total, key
    # Rejected answers net to zero, whatever their workforce.
    for answer_id in played.rejected_answers:
        answer_entries = [
            e for e in entries if e.answer_id == answer_id and e.kind is not EntryKind.BONUS
        ]
        bonus_fees = [e for e in answer_entries if e.memo == "MTurk bonus commission"]
        assert total(answer_entries) == total(bonus_fees)
    # Every stored amount fits integer micros.
    assert all(e.amount == e.amount.quantize(D("0.000001")) for e in entries)

    breakdown = cost_breakdown(entries, labelled_items=7, currency=CURRENCY)
    assert breakdown.rewards + breakdown.fees + breakdown.gold + breakdown.other == grand_total
    assert breakdown.gold == played.expected_gold
    assert breakdown.other == 0
    assert breakdown.per_label is not None
    assert abs(breakdown.per_label * 7 - grand_total) <= D("0.0000035")


@given(
    amounts_in_micros=st.lists(st.integers(-(10**9), 10**9), max_size=30),
    key=st.sampled_from(KEYS),
)
def test_groups_sum_to_total_for_any_signed_amounts(
    amounts_in_micros: list[int], key: GroupKey
) -> None:
    entries = [
        entry(
            EntryKind.ADJUSTMENT,
            str(D(n) / 1_000_000),
            project_id=n % 3 or None,
            worker_id=n % 5,
            occurred_at=T0 + timedelta(hours=n % 97),
        )
        for n in amounts_in_micros
    ]
    assert sum(group_totals(entries, key).values(), D(0)) == total(entries)
