"""Fee rules: MTurk's published commission with worked examples, vendor contracts, internal pool."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.errors import InvalidAmountError, InvalidBillingInputError
from billing.fees import (
    InternalPoolCost,
    MTurkFeeRule,
    VendorContract,
    choose_mturk_packaging,
    internal_time_cost,
    mturk_assignment_fee,
    mturk_bonus_fee,
    mturk_commission_rate,
    mturk_hit_cost,
    vendor_answer_fee,
    vendor_minimum_topup,
)
from billing.money import round_cents

D = Decimal


# --- MTurk: commission rate ----------------------------------------------------------


@pytest.mark.parametrize(
    ("assignments", "masters", "rate"),
    [
        (1, False, "0.20"),
        (9, False, "0.20"),
        (10, False, "0.40"),
        (100, False, "0.40"),
        (9, True, "0.25"),
        (10, True, "0.45"),
    ],
)
def test_commission_rate_by_hit_size_and_masters(
    assignments: int, masters: bool, rate: str
) -> None:
    assert mturk_commission_rate(assignments_per_hit=assignments, masters=masters) == D(rate)


# --- MTurk: worked examples -----------------------------------------------------------


def test_nine_assignments_pay_20_percent_ten_pay_40() -> None:
    # $0.50 reward: 20% is $0.10 per assignment; at MaxAssignments 10 it is 40%, $0.20.
    assert mturk_assignment_fee(D("0.50"), assignments_per_hit=9) == D("0.10")
    assert mturk_assignment_fee(D("0.50"), assignments_per_hit=10) == D("0.20")

    nine = mturk_hit_cost(D("0.50"), 9)
    assert (nine.reward_total, nine.fee_total, nine.total) == (D("4.50"), D("0.90"), D("5.40"))
    ten = mturk_hit_cost(D("0.50"), 10)
    assert (ten.reward_total, ten.fee_total, ten.total) == (D("5.00"), D("2.00"), D("7.00"))
    # The tenth assignment costs $1.60: its own $0.70 plus $0.10 more on each of the others.
    assert ten.total - nine.total == D("1.60")


def test_minimum_fee_of_one_cent_per_assignment() -> None:
    # $0.02 at 20% is $0.004, which rounds to $0.00; the $0.01 minimum applies.
    assert mturk_assignment_fee(D("0.02"), assignments_per_hit=1) == D("0.01")
    # $0.01 at 45% (large HIT + Masters) is $0.0045: still the minimum.
    assert mturk_assignment_fee(D("0.01"), assignments_per_hit=10, masters=True) == D("0.01")
    # $0.02 at 40% is $0.008, which rounds to $0.01 anyway.
    assert mturk_assignment_fee(D("0.02"), assignments_per_hit=12) == D("0.01")
    # Above $0.05 the percentage wins: $0.10 at 20% is $0.02.
    assert mturk_assignment_fee(D("0.10"), assignments_per_hit=1) == D("0.02")
    # The minimum is per assignment, so a HIT of 9 pays 9 cents, not 9 × $0.004 rounded.
    assert mturk_hit_cost(D("0.02"), 9).fee_total == D("0.09")


def test_bonus_fee_is_20_percent_with_its_own_minimum() -> None:
    assert mturk_bonus_fee(D("1.00")) == D("0.20")
    assert mturk_bonus_fee(D("2.35")) == D("0.47")
    # $0.03 bonus: 20% is $0.006, rounds to $0.01.
    assert mturk_bonus_fee(D("0.03")) == D("0.01")
    # $0.02 bonus: 20% is $0.004, rounds to $0.00; the $0.01 bonus minimum applies.
    assert mturk_bonus_fee(D("0.02")) == D("0.01")
    # A 1-cent bonus costs 100% in fees.
    assert mturk_bonus_fee(D("0.01")) == D("0.01")


def test_masters_adds_five_percent_on_the_reward_only() -> None:
    # $1.00 reward: 25% with Masters on a small HIT, 45% on a large one.
    assert mturk_assignment_fee(D("1.00"), assignments_per_hit=3, masters=True) == D("0.25")
    assert mturk_assignment_fee(D("1.00"), assignments_per_hit=10, masters=True) == D("0.45")
    # Bonuses carry the base 20% whatever the HIT required.
    assert mturk_bonus_fee(D("1.00")) == D("0.20")
    assert mturk_hit_cost(D("1.00"), 5, masters=True).total == D("6.25")


@pytest.mark.parametrize(
    ("reward", "assignments", "masters", "exact", "fee"),
    [
        # Exactly half a cent rounds up; banker's rounding would give the even cent instead.
        ("0.50", 9, True, "0.125", "0.13"),
        ("0.18", 9, True, "0.045", "0.05"),
        ("0.50", 10, True, "0.225", "0.23"),
        ("0.10", 10, True, "0.045", "0.05"),
        # Below half a cent rounds down, above rounds up (MTurk's own examples).
        ("0.52", 9, False, "0.104", "0.10"),
        ("0.53", 9, False, "0.106", "0.11"),
    ],
)
def test_fee_rounds_half_up_to_the_cent(
    reward: str, assignments: int, masters: bool, exact: str, fee: str
) -> None:
    rate = mturk_commission_rate(assignments_per_hit=assignments, masters=masters)
    assert D(reward) * rate == D(exact)  # the example really sits where it claims
    assert mturk_assignment_fee(D(reward), assignments_per_hit=assignments, masters=masters) == D(
        fee
    )


def test_round_cents_matches_mturk_published_examples() -> None:
    assert round_cents(D("0.104")) == D("0.10")
    assert round_cents(D("0.105")) == D("0.11")
    assert round_cents(D("0.108")) == D("0.11")


def test_zero_reward_and_zero_bonus_pay_no_fee() -> None:
    assert mturk_assignment_fee(D("0.00"), assignments_per_hit=10) == 0
    assert mturk_bonus_fee(D("0")) == 0


@pytest.mark.parametrize("bad", [D("0.005"), D("-0.10"), 0.5, "0.50"])
def test_mturk_refuses_fractions_of_a_cent_negative_and_non_decimal(bad: object) -> None:
    with pytest.raises(InvalidAmountError):
        mturk_assignment_fee(bad, assignments_per_hit=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError):
        mturk_bonus_fee(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, True])
def test_assignments_per_hit_must_be_a_positive_int(bad: int) -> None:
    with pytest.raises(InvalidBillingInputError):
        mturk_assignment_fee(D("0.10"), assignments_per_hit=bad)
    with pytest.raises(InvalidBillingInputError):
        MTurkFeeRule(assignments_per_hit=bad)


@given(reward=st.integers(0, 100_000), assignments=st.integers(1, 50), masters=st.booleans())
def test_fee_is_whole_cents_within_half_a_cent_of_the_rate_or_the_minimum(
    reward: int, assignments: int, masters: bool
) -> None:
    amount = D(reward) / 100
    fee = mturk_assignment_fee(amount, assignments_per_hit=assignments, masters=masters)
    exact = amount * mturk_commission_rate(assignments_per_hit=assignments, masters=masters)
    assert fee == fee.quantize(D("0.01"))
    if reward == 0:
        assert fee == 0
    elif exact < D("0.015"):
        assert fee == D("0.01")
    else:
        assert abs(fee - exact) <= D("0.005")
    # A HIT of 10 or more never costs less per assignment than one of 9 or fewer.
    small = mturk_assignment_fee(amount, assignments_per_hit=1, masters=masters)
    large = mturk_assignment_fee(amount, assignments_per_hit=10, masters=masters)
    assert large >= small


# --- MTurk: packaging -----------------------------------------------------------------


def test_packaging_splits_ten_answers_into_two_hits_of_five() -> None:
    choice = choose_mturk_packaging(D("0.50"), 10, items=100)
    assert choice.chosen.assignments_per_hit == (5, 5)
    assert choice.chosen.cost_per_item == D("6.00")  # 10 × ($0.50 + $0.10)
    assert choice.rejected.assignments_per_hit == (10,)
    assert choice.rejected.cost_per_item == D("7.00")  # 10 × ($0.50 + $0.20)
    assert choice.saving_per_item == D("1.00")
    assert choice.saving == D("100.00")


def test_packaging_keeps_one_hit_when_nine_or_fewer_answers() -> None:
    choice = choose_mturk_packaging(D("0.50"), 9)
    assert choice.chosen.assignments_per_hit == (9,)
    assert choice.chosen.hits_per_item == 1
    assert choice.saving_per_item == 0


def test_packaging_keeps_one_hit_when_the_minimum_fee_makes_splitting_worthless() -> None:
    # $0.01 reward: 20% and 40% both fall under the $0.01 minimum, so splitting saves nothing
    # and the single HIT (no cross-HIT duplicate-worker guard needed) wins the tie.
    choice = choose_mturk_packaging(D("0.01"), 12)
    assert choice.chosen.assignments_per_hit == (12,)
    assert choice.rejected.assignments_per_hit == (6, 6)
    assert choice.saving_per_item == 0


def test_packaging_balances_hit_sizes() -> None:
    assert choose_mturk_packaging(D("1.00"), 19).chosen.assignments_per_hit == (7, 6, 6)
    assert choose_mturk_packaging(D("1.00"), 27).chosen.assignments_per_hit == (9, 9, 9)


@given(
    reward=st.integers(1, 500).map(lambda n: D(n) / 100),
    answers=st.integers(1, 60),
    masters=st.booleans(),
)
def test_packaging_never_picks_the_dearer_plan(
    reward: Decimal, answers: int, masters: bool
) -> None:
    choice = choose_mturk_packaging(reward, answers, masters=masters)
    assert sum(choice.chosen.assignments_per_hit) == answers
    assert sum(choice.rejected.assignments_per_hit) == answers
    assert choice.chosen.cost_per_item <= choice.rejected.cost_per_item
    assert choice.saving_per_item == choice.rejected.cost_per_item - choice.chosen.cost_per_item
    if choice.chosen.hits_per_item > 1:
        assert max(choice.chosen.assignments_per_hit) <= 9
    # The plan's cost is what its HITs cost.
    assert choice.chosen.cost_per_item == sum(
        (mturk_hit_cost(reward, n, masters).total for n in choice.chosen.assignments_per_hit),
        D(0),
    )


# --- Vendors --------------------------------------------------------------------------


def test_vendor_fee_is_share_of_charge_plus_fixed_per_answer() -> None:
    contract = VendorContract(currency="USD", fee_rate=D("0.10"), fee_per_answer=D("0.002"))
    # 10% of $0.05 is $0.005, plus $0.002.
    assert vendor_answer_fee(contract, D("0.05")) == D("0.007")


def test_vendor_fee_rounds_half_up_to_the_micro() -> None:
    contract = VendorContract(currency="USD", fee_rate=D("0.1"))
    # 10% of $0.000015 is $0.0000015: half a micro rounds up.
    assert vendor_answer_fee(contract, D("0.000015")) == D("0.000002")
    assert vendor_answer_fee(contract, D("0.000014")) == D("0.000001")


def test_vendor_contract_defaults_to_no_fee() -> None:
    assert vendor_answer_fee(VendorContract(currency="EUR"), D("0.40")) == 0


def test_vendor_minimum_per_invoice_tops_up_the_difference() -> None:
    contract = VendorContract(currency="USD", minimum_per_invoice=D("50.00"))
    assert vendor_minimum_topup(contract, D("42.30")) == D("7.70")
    assert vendor_minimum_topup(contract, D("50.00")) == 0
    assert vendor_minimum_topup(contract, D("60.00")) == 0
    # A period that is a net credit still owes the minimum.
    assert vendor_minimum_topup(contract, D("-5.00")) == D("55.00")


def test_vendor_contract_refuses_bad_values() -> None:
    with pytest.raises(InvalidAmountError):
        VendorContract(currency="USD", fee_rate=D("-0.1"))
    with pytest.raises(InvalidAmountError):
        VendorContract(currency="USD", fee_per_answer=0.01)  # type: ignore[arg-type]
    with pytest.raises(InvalidBillingInputError):
        VendorContract(currency="usd")


# --- Internal pool --------------------------------------------------------------------


def test_internal_pool_costs_nothing_unless_configured() -> None:
    assert internal_time_cost(InternalPoolCost(), 300) == 0
    assert InternalPoolCost().fee_per_answer == 0


def test_internal_hourly_cost_becomes_cost_per_answer() -> None:
    rule = InternalPoolCost(hourly_cost=D("18.00"))
    assert internal_time_cost(rule, 45) == D("0.225")  # 18 × 45 / 3600
    assert internal_time_cost(rule, 3600) == D("18.00")
    # $20/h for 10 s is $0.0555…, rounded half-up to the micro.
    assert internal_time_cost(InternalPoolCost(hourly_cost=D("20")), 10) == D("0.055556")
    assert internal_time_cost(rule, D("1.5")) == D("0.0075")


def test_internal_time_cost_refuses_negative_time() -> None:
    with pytest.raises(InvalidAmountError):
        internal_time_cost(InternalPoolCost(hourly_cost=D("18")), -1)
