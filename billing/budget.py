"""Budget arithmetic: reserve on dispatch, commit on acceptance, release on cancel or expiry.

A project's budget is a limit and two amounts in use: ``committed`` (spent on
accepted answers) and ``reserved`` (set aside for slots handed out but not yet
answered). Dispatch reserves the expected cost of a slot before handing it out;
an accepted answer turns its reservation into a commitment at the actual cost;
a cancelled or expired slot releases its reservation. Every operation is a pure
function from one immutable :class:`BudgetState` to the next, and either
applies in full or raises with the state unchanged, so ``committed + reserved``
never passes the limit through these functions.

The orchestrator keeps the state in the project's row and applies the same
function under a row lock, so concurrent dispatchers cannot both take the last
dollar.
"""

from dataclasses import dataclass, replace
from decimal import Decimal

from billing._checks import check_amount, check_currency
from billing.errors import BudgetExceededError, InvalidBudgetOperationError
from billing.fees import FeeRule
from billing.ledger import answer_cost
from billing.rates import RateCard


@dataclass(frozen=True)
class BudgetState:
    """A budget at one moment.

    Attributes:
        limit: The most the project may spend, in ``currency``; None for no limit.
        committed: Spent on accepted answers and bonuses, net of credits.
        reserved: Set aside for slots that are out and not yet answered.
        currency: ISO 4217 code of every amount.
    """

    limit: Decimal | None
    committed: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    currency: str = "USD"

    def __post_init__(self) -> None:
        if self.limit is not None:
            object.__setattr__(self, "limit", check_amount(self.limit, "limit"))
        object.__setattr__(self, "committed", check_amount(self.committed, "committed"))
        object.__setattr__(self, "reserved", check_amount(self.reserved, "reserved"))
        object.__setattr__(self, "currency", check_currency(self.currency))

    @property
    def in_use(self) -> Decimal:
        """Committed plus reserved."""
        return self.committed + self.reserved

    @property
    def remaining(self) -> Decimal | None:
        """What can still be reserved (never negative), or None without a limit."""
        if self.limit is None:
            return None
        # A limit lowered below what is in use leaves nothing, not a negative amount.
        return max(self.limit - self.in_use, Decimal(0))


def _exceeded(state: BudgetState, requested: Decimal) -> BudgetExceededError:
    """Build the error for a request that does not fit, saying what is left."""
    left = state.remaining if state.remaining is not None else Decimal(0)
    return BudgetExceededError(requested=requested, remaining=left, currency=state.currency)


def _fits(state: BudgetState, extra: Decimal) -> bool:
    """Whether ``extra`` more in use stays within the limit."""
    return state.limit is None or state.in_use + extra <= state.limit


def reserve(state: BudgetState, amount: Decimal) -> BudgetState:
    """Return ``state`` with ``amount`` more reserved, all or nothing.

    Args:
        state: The budget now.
        amount: Expected cost of what is being dispatched, in ``state.currency``
            (see :func:`expected_slot_cost`; several slots at once reserve their sum).

    Returns:
        The new state.

    Raises:
        BudgetExceededError: ``committed + reserved + amount`` would pass the limit; the
            error carries the amount requested and the amount left.
    """
    value = check_amount(amount, "amount")
    if not _fits(state, value):
        raise _exceeded(state, value)
    return replace(state, reserved=state.reserved + value)


def commit(state: BudgetState, reserved_amount: Decimal, actual_amount: Decimal) -> BudgetState:
    """Return ``state`` with a reservation turned into spending at its actual cost.

    Args:
        state: The budget now.
        reserved_amount: What was reserved for the slot, in ``state.currency``; zero for
            spending that had no reservation, such as a bonus.
        actual_amount: What the accepted answer's entries came to.

    Returns:
        The new state; an actual cost below the reservation frees the difference.

    Raises:
        InvalidBudgetOperationError: ``reserved_amount`` is more than is reserved.
        BudgetExceededError: The actual cost is above the reservation and the excess does
            not fit; nothing is committed. (Reserving with :func:`expected_slot_cost` at the
            same rate gives the exact cost, so this only happens with bonuses or time-based
            costs that ran over.)
    """
    reserved_value = check_amount(reserved_amount, "reserved_amount")
    actual_value = check_amount(actual_amount, "actual_amount")
    if reserved_value > state.reserved:
        raise InvalidBudgetOperationError(
            f"cannot commit a reservation of {reserved_value}: only {state.reserved} "
            f"{state.currency} is reserved",
            details={"field": "reserved_amount"},
        )
    excess = actual_value - reserved_value
    if excess > 0 and not _fits(state, excess):
        raise _exceeded(state, excess)
    return replace(
        state,
        committed=state.committed + actual_value,
        reserved=state.reserved - reserved_value,
    )


def release(state: BudgetState, amount: Decimal) -> BudgetState:
    """Return ``state`` with a reservation given back (slot cancelled or lease expired).

    Args:
        state: The budget now.
        amount: What was reserved for the slots released, in ``state.currency``.

    Returns:
        The new state.

    Raises:
        InvalidBudgetOperationError: ``amount`` is more than is reserved.
    """
    value = check_amount(amount, "amount")
    if value > state.reserved:
        raise InvalidBudgetOperationError(
            f"cannot release {value}: only {state.reserved} {state.currency} is reserved",
            details={"field": "amount"},
        )
    return replace(state, reserved=state.reserved - value)


def credit(state: BudgetState, amount: Decimal) -> BudgetState:
    """Return ``state`` with committed spending given back (a reversal or a refund).

    Args:
        state: The budget now.
        amount: The amount taken back, as a positive number in ``state.currency``.

    Returns:
        The new state.

    Raises:
        InvalidBudgetOperationError: ``amount`` is more than is committed.
    """
    value = check_amount(amount, "amount")
    if value > state.committed:
        raise InvalidBudgetOperationError(
            f"cannot credit {value}: only {state.committed} {state.currency} is committed",
            details={"field": "amount"},
        )
    return replace(state, committed=state.committed - value)


def max_affordable(state: BudgetState, unit_cost: Decimal) -> int | None:
    """Return how many slots of ``unit_cost`` still fit in the budget.

    Args:
        state: The budget now.
        unit_cost: Expected cost of one slot, in ``state.currency``.

    Returns:
        The number of slots that :func:`reserve` would accept one after another, or None
        when any number fits (no limit, or slots that cost nothing).
    """
    value = check_amount(unit_cost, "unit_cost")
    remaining = state.remaining
    if remaining is None or value == 0:
        return None
    return int(remaining // value)


def expected_slot_cost(
    *,
    card: RateCard,
    fee_rule: FeeRule,
    is_gold: bool = False,
    reward: Decimal | None = None,
    expected_seconds: Decimal | int | None = None,
    is_first_for_item: bool = False,
) -> Decimal:
    """Return the amount to reserve when one slot is dispatched: reward or charge plus fees.

    Args:
        card: The workforce's rate card in force now.
        fee_rule: The workforce's fee rule.
        is_gold: Whether the slot is on a gold item (vendors may price gold differently).
        reward: The reward the slot will pay when it differs from the card (an MTurk HIT's).
        expected_seconds: For an internal pool with an hourly cost, the time one answer is
            expected to take; use a generous figure, since an answer that takes longer
            costs more than was reserved.
        is_first_for_item: Whether the slot is the vendor's first on the item (per-item price).

    Returns:
        The cost in ``card.currency``, computed by the same rules the ledger uses, so an
        answer accepted at the same rate commits exactly what was reserved.
    """
    return answer_cost(
        card=card,
        fee_rule=fee_rule,
        is_gold=is_gold,
        reward=reward,
        seconds_spent=expected_seconds,
        is_first_for_item=is_first_for_item,
    )
