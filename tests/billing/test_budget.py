"""Budget arithmetic: reserve, commit, release, and what still fits."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from billing.budget import (
    BudgetState,
    commit,
    credit,
    expected_slot_cost,
    max_affordable,
    release,
    reserve,
)
from billing.errors import BudgetExceededError, InvalidAmountError, InvalidBudgetOperationError
from billing.fees import InternalPoolCost, MTurkFeeRule, VendorContract
from billing.ledger import EntryRefs, entries_for_accepted_answer, total
from billing.rates import RateCard

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_reserve_adds_to_reserved_and_leaves_the_old_state_alone() -> None:
    before = BudgetState(limit=D("10.00"))
    after = reserve(before, D("4.00"))
    assert (after.committed, after.reserved, after.remaining) == (D(0), D("4.00"), D("6.00"))
    assert before.reserved == 0  # immutable: the old state is still valid


def test_reserve_up_to_the_limit_exactly() -> None:
    state = reserve(BudgetState(limit=D("10.00"), committed=D("6.00")), D("4.00"))
    assert state.in_use == D("10.00") and state.remaining == 0


def test_reserve_past_the_limit_says_what_is_left() -> None:
    state = BudgetState(limit=D("20.00"), committed=D("10.00"), reserved=D("6.80"))
    with pytest.raises(BudgetExceededError) as caught:
        reserve(state, D("12.5"))
    error = caught.value
    assert str(error) == "budget exceeded: 12.50 USD requested, 3.20 USD left"
    assert error.code == "budget_exceeded"
    assert (error.requested, error.remaining, error.currency) == (D("12.5"), D("3.20"), "USD")
    assert error.details == {"requested": "12.50", "remaining": "3.20", "currency": "USD"}


def test_reserve_is_all_or_nothing() -> None:
    # 3.20 is left: a request for 3.21 reserves nothing at all, not 3.20 of it.
    state = BudgetState(limit=D("20.00"), committed=D("16.80"))
    with pytest.raises(BudgetExceededError):
        reserve(state, D("3.21"))
    assert reserve(state, D("3.20")).reserved == D("3.20")


def test_no_limit_accepts_any_reservation() -> None:
    state = reserve(BudgetState(limit=None), D("1000000"))
    assert state.reserved == D("1000000") and state.remaining is None


def test_commit_moves_the_reservation_to_committed_at_actual_cost() -> None:
    state = BudgetState(limit=D("10.00"), reserved=D("1.40"))
    cheaper = commit(state, D("0.70"), D("0.60"))  # the difference goes back
    assert (cheaper.committed, cheaper.reserved) == (D("0.60"), D("0.70"))
    dearer = commit(state, D("0.70"), D("0.80"))  # the excess fits, so it is taken
    assert (dearer.committed, dearer.reserved) == (D("0.80"), D("0.70"))


def test_commit_over_the_reservation_must_still_fit() -> None:
    state = BudgetState(limit=D("1.00"), committed=D("0.30"), reserved=D("0.70"))
    with pytest.raises(BudgetExceededError, match="0.10 USD requested, 0.00 USD left"):
        commit(state, D("0.70"), D("0.80"))


def test_commit_without_a_reservation_is_plain_spending() -> None:
    state = commit(BudgetState(limit=D("5")), D("0"), D("1.00"))  # e.g. a bonus
    assert (state.committed, state.reserved) == (D("1.00"), D(0))


def test_commit_and_release_cannot_take_more_than_is_reserved() -> None:
    state = BudgetState(limit=D("10"), reserved=D("1.00"))
    with pytest.raises(InvalidBudgetOperationError):
        commit(state, D("1.01"), D("1.01"))
    with pytest.raises(InvalidBudgetOperationError):
        release(state, D("1.01"))
    assert release(state, D("1.00")).reserved == 0


def test_credit_gives_committed_spending_back() -> None:
    state = BudgetState(limit=D("10"), committed=D("2.00"))
    assert credit(state, D("0.60")).committed == D("1.40")
    with pytest.raises(InvalidBudgetOperationError):
        credit(state, D("2.01"))


def test_amounts_must_be_non_negative_decimals() -> None:
    state = BudgetState(limit=D("10"))
    with pytest.raises(InvalidAmountError):
        reserve(state, D("-1"))
    with pytest.raises(InvalidAmountError):
        reserve(state, 0.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError):
        BudgetState(limit=D("-1"))


def test_max_affordable_counts_whole_slots() -> None:
    state = BudgetState(limit=D("10.00"), committed=D("1.00"))
    assert max_affordable(state, D("3.00")) == 3  # 9.00 left
    assert max_affordable(state, D("0.70")) == 12  # 12 × 0.70 = 8.40; 13 would be 9.10
    assert max_affordable(BudgetState(limit=None), D("1")) is None
    assert max_affordable(state, D("0")) is None
    # A limit lowered below what is in use leaves no room rather than negative room.
    assert max_affordable(BudgetState(limit=D("1"), committed=D("2")), D("0.10")) == 0


@given(
    limit=st.integers(0, 10_000).map(lambda n: D(n) / 100),
    used=st.integers(0, 10_000).map(lambda n: D(n) / 100),
    unit=st.integers(1, 500).map(lambda n: D(n) / 1000),
)
def test_max_affordable_is_exactly_what_reserve_accepts(
    limit: Decimal, used: Decimal, unit: Decimal
) -> None:
    state = BudgetState(limit=limit, committed=min(used, limit))
    fits = max_affordable(state, unit)
    assert fits is not None
    reserved = reserve(state, unit * fits)
    with pytest.raises(BudgetExceededError):
        reserve(reserved, unit)


def test_expected_slot_cost_includes_fees() -> None:
    card = RateCard(effective_from=T0, price_per_answer=D("0.50"))
    assert expected_slot_cost(card=card, fee_rule=MTurkFeeRule(assignments_per_hit=10)) == D("0.70")
    assert expected_slot_cost(card=card, fee_rule=MTurkFeeRule(assignments_per_hit=9)) == D("0.60")
    assert expected_slot_cost(
        card=card, fee_rule=MTurkFeeRule(assignments_per_hit=9), reward=D("0.02")
    ) == D("0.03")  # $0.02 reward plus the $0.01 minimum fee
    vendor = RateCard(effective_from=T0, price_per_answer=D("0.10"), price_per_item=D("0.30"))
    contract = VendorContract(currency="USD", fee_rate=D("0.10"))
    assert expected_slot_cost(card=vendor, fee_rule=contract) == D("0.11")
    assert expected_slot_cost(card=vendor, fee_rule=contract, is_first_for_item=True) == D("0.44")
    internal = InternalPoolCost(hourly_cost=D("36"))
    assert expected_slot_cost(card=card, fee_rule=internal, expected_seconds=60) == D("1.10")


def test_reserving_the_slot_cost_then_committing_the_answer_frees_nothing() -> None:
    card = RateCard(effective_from=T0, price_per_answer=D("0.35"))
    rule = MTurkFeeRule(assignments_per_hit=12, masters=True)
    slot = expected_slot_cost(card=card, fee_rule=rule)
    state = reserve(BudgetState(limit=D("100")), slot)
    actual = total(
        entries_for_accepted_answer(
            card=card, fee_rule=rule, is_gold=False, occurred_at=T0, refs=EntryRefs()
        )
    )
    assert actual == slot == D("0.51")  # 0.35 + 45% = 0.1575 -> 0.16
    assert commit(state, slot, actual) == BudgetState(limit=D("100"), committed=D("0.51"))


# --- No sequence of operations overspends ---------------------------------------------

AMOUNTS = st.integers(0, 2_000).map(lambda n: D(n) / 100)


class BudgetMachine(RuleBasedStateMachine):
    """Random dispatch, acceptance, cancellation, expiry and reversal against one budget."""

    slots = Bundle("slots")

    @initialize(limit=st.none() | st.integers(0, 5_000).map(lambda n: D(n) / 100))
    def start(self, limit: Decimal | None) -> None:
        self.state = BudgetState(limit=limit)
        self.outstanding: list[Decimal] = []

    def attempt(self, operation: object, *args: Decimal) -> bool:
        """Apply an operation; a refused one must leave the state exactly as it was."""
        before = self.state
        try:
            self.state = operation(self.state, *args)  # type: ignore[operator]
        except BudgetExceededError as error:
            assert self.state == before
            assert before.remaining is not None and error.remaining == before.remaining
            return False
        return True

    @rule(target=slots, amount=AMOUNTS)
    def dispatch(self, amount: Decimal) -> Decimal | None:
        if self.attempt(reserve, amount):
            self.outstanding.append(amount)
            return amount
        return None

    @rule(reserved=consumes(slots), delta=st.integers(-200, 200).map(lambda n: D(n) / 100))
    def accept(self, reserved: Decimal | None, delta: Decimal) -> None:
        if reserved is None:
            return
        actual = max(reserved + delta, D(0))
        if self.attempt(commit, reserved, actual):
            self.outstanding.remove(reserved)

    @rule(reserved=consumes(slots))
    def cancel_or_expire(self, reserved: Decimal | None) -> None:
        if reserved is None:
            return
        self.state = release(self.state, reserved)
        self.outstanding.remove(reserved)

    @rule(bonus=AMOUNTS)
    def pay_bonus(self, bonus: Decimal) -> None:
        self.attempt(commit, D(0), bonus)

    @rule(share=st.integers(0, 100))
    def reverse_spending(self, share: int) -> None:
        self.state = credit(
            self.state,
            (self.state.committed * share / 100).quantize(D("0.01"), rounding="ROUND_DOWN"),
        )

    @invariant()
    def never_over_the_limit(self) -> None:
        if self.state.limit is not None:
            assert self.state.committed + self.state.reserved <= self.state.limit

    @invariant()
    def reserved_is_what_is_outstanding(self) -> None:
        assert self.state.reserved == sum(self.outstanding, D(0))
        assert self.state.committed >= 0


BudgetMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_no_sequence_of_operations_overspends = BudgetMachine.TestCase
