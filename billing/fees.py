"""Fee rules as data, and the functions that apply them.

Three kinds of workforce, three kinds of rule:

* :class:`MTurkFeeRule`: Amazon Mechanical Turk's published commission. 20% of every
  reward and bonus; a further 20% of the reward on HITs with 10 or more assignments
  (40% in all); a further 5% of the reward when the HIT requires the Masters
  qualification; at least $0.01 per assignment and per bonus; each fee rounded
  half-up to the cent ($0.105 becomes $0.11, $0.104 becomes $0.10). MTurk charges
  only when work is approved, and pays in whole US cents.
* :class:`VendorContract`: what an outside vendor's contract adds to its per-answer
  price: a share of the charge, a fixed fee per answer, and a minimum per invoice.
* :class:`InternalPoolCost`: the internal pool has no fee unless one is configured;
  optionally an hourly cost per worker turned into a cost per answer from the time
  the answer took.

Premium (non-Masters) qualification fees and MTurk's older pricing are out of scope.
"""

from dataclasses import dataclass
from decimal import Decimal

from billing._checks import check_amount, check_currency
from billing.errors import CurrencyMismatchError, InvalidAmountError, InvalidBillingInputError
from billing.money import CENT, round_cents, round_micros

MTURK_CURRENCY = "USD"
MTURK_COMMISSION = Decimal("0.20")
"""Base commission on rewards and bonuses."""
MTURK_LARGE_HIT_COMMISSION = Decimal("0.20")
"""Extra commission on the reward of HITs with :data:`MTURK_LARGE_HIT_ASSIGNMENTS` or more."""
MTURK_LARGE_HIT_ASSIGNMENTS = 10
"""MaxAssignments from which the large-HIT commission applies."""
MTURK_MASTERS_COMMISSION = Decimal("0.05")
"""Extra commission on the reward of HITs that require the Masters qualification."""
MTURK_MINIMUM_FEE = Decimal("0.01")
"""Smallest commission MTurk charges per assignment and per bonus."""

SECONDS_PER_HOUR = 3600


def _check_mturk_payment(amount: Decimal, field: str) -> Decimal:
    """Return a non-negative whole-cent USD amount, since MTurk pays nothing finer."""
    value = check_amount(amount, field)
    if value != value.quantize(CENT):
        raise InvalidAmountError(
            f"{field} must be whole US cents on MTurk, got {value}", details={"field": field}
        )
    return value


def _check_count(value: int, field: str) -> int:
    """Return a positive int count or raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidBillingInputError(
            f"{field} must be an int of at least 1, got {value!r}", details={"field": field}
        )
    return value


# --- MTurk -----------------------------------------------------------------------


@dataclass(frozen=True)
class MTurkFeeRule:
    """The MTurk commission that applies to the answers of one HIT.

    Attributes:
        assignments_per_hit: The HIT's MaxAssignments; 10 or more adds the large-HIT
            commission to every assignment of the HIT.
        masters: Whether the HIT requires the Masters qualification.
    """

    assignments_per_hit: int
    masters: bool = False

    def __post_init__(self) -> None:
        _check_count(self.assignments_per_hit, "assignments_per_hit")


def mturk_commission_rate(*, assignments_per_hit: int, masters: bool = False) -> Decimal:
    """Return MTurk's commission on a reward as a fraction (0.20, 0.25, 0.40 or 0.45).

    Args:
        assignments_per_hit: The HIT's MaxAssignments.
        masters: Whether the HIT requires the Masters qualification.

    Returns:
        The commission as a fraction of the reward, before the minimum and rounding.
    """
    _check_count(assignments_per_hit, "assignments_per_hit")
    rate = MTURK_COMMISSION
    if assignments_per_hit >= MTURK_LARGE_HIT_ASSIGNMENTS:
        rate += MTURK_LARGE_HIT_COMMISSION
    if masters:
        rate += MTURK_MASTERS_COMMISSION
    return rate


def _mturk_fee(amount: Decimal, rate: Decimal) -> Decimal:
    """Apply a commission rate with MTurk's rounding and minimum to one payment."""
    # No payment, no transaction: MTurk's minimum is per payment it processes.
    if amount == 0:
        return Decimal("0.00")
    return max(round_cents(amount * rate), MTURK_MINIMUM_FEE)


def mturk_assignment_fee(
    reward: Decimal, *, assignments_per_hit: int, masters: bool = False
) -> Decimal:
    """Return MTurk's fee for one approved assignment.

    Args:
        reward: The HIT's reward per assignment, in whole US dollars and cents.
        assignments_per_hit: The HIT's MaxAssignments (10 or more adds 20%).
        masters: Whether the HIT requires the Masters qualification (adds 5%).

    Returns:
        The fee in USD: reward times the commission rate, rounded half-up to the cent,
        at least $0.01 (and $0.00 for a zero reward).

    Examples:
        >>> mturk_assignment_fee(Decimal("0.50"), assignments_per_hit=9)
        Decimal('0.10')
        >>> mturk_assignment_fee(Decimal("0.50"), assignments_per_hit=10)
        Decimal('0.20')
    """
    value = _check_mturk_payment(reward, "reward")
    rate = mturk_commission_rate(assignments_per_hit=assignments_per_hit, masters=masters)
    return _mturk_fee(value, rate)


def mturk_bonus_fee(bonus: Decimal) -> Decimal:
    """Return MTurk's fee for one bonus payment.

    Args:
        bonus: The bonus paid to one worker, in whole US dollars and cents.

    Returns:
        The fee in USD: 20% of the bonus rounded half-up to the cent, at least $0.01.
        Neither the large-HIT nor the Masters commission applies to bonuses.
    """
    value = _check_mturk_payment(bonus, "bonus")
    return _mturk_fee(value, MTURK_COMMISSION)


@dataclass(frozen=True)
class HitCost:
    """What one HIT costs when every assignment is approved.

    Attributes:
        assignments: MaxAssignments of the HIT.
        reward_total: Rewards paid to workers, in USD.
        fee_total: MTurk fees, in USD.
    """

    assignments: int
    reward_total: Decimal
    fee_total: Decimal

    @property
    def total(self) -> Decimal:
        """Rewards plus fees, in USD."""
        return self.reward_total + self.fee_total


def mturk_hit_cost(reward: Decimal, assignments: int, masters: bool = False) -> HitCost:
    """Return the cost of one HIT whose assignments are all approved.

    Args:
        reward: Reward per assignment, in whole US cents.
        assignments: The HIT's MaxAssignments.
        masters: Whether the HIT requires the Masters qualification.

    Returns:
        Rewards and fees in USD. The fee is charged (and rounded) per assignment, so it
        is ``assignments`` times the per-assignment fee.
    """
    _check_count(assignments, "assignments")
    fee = mturk_assignment_fee(reward, assignments_per_hit=assignments, masters=masters)
    return HitCost(
        assignments=assignments, reward_total=reward * assignments, fee_total=fee * assignments
    )


@dataclass(frozen=True)
class HitPlan:
    """One way to collect a number of answers per item on MTurk.

    Attributes:
        assignments_per_hit: MaxAssignments of each HIT created per item.
        cost_per_item: Rewards plus fees per item, in USD.
        fee_per_item: The fee part of ``cost_per_item``, in USD.
    """

    assignments_per_hit: tuple[int, ...]
    cost_per_item: Decimal
    fee_per_item: Decimal

    @property
    def hits_per_item(self) -> int:
        """Number of HITs created per item."""
        return len(self.assignments_per_hit)


@dataclass(frozen=True)
class PackagingChoice:
    """The cheaper of two MTurk packagings, with the one it beat.

    Attributes:
        chosen: The plan to use.
        rejected: The other plan (the same as ``chosen`` when only one plan exists).
        items: Number of items the plans are for.
        saving_per_item: ``rejected.cost_per_item - chosen.cost_per_item`` in USD, never negative.
    """

    chosen: HitPlan
    rejected: HitPlan
    items: int
    saving_per_item: Decimal

    @property
    def saving(self) -> Decimal:
        """Total saving over all items, in USD."""
        return self.saving_per_item * self.items


def _hit_plan(reward: Decimal, sizes: tuple[int, ...], masters: bool) -> HitPlan:
    """Price a packaging given the MaxAssignments of each HIT of one item."""
    costs = [mturk_hit_cost(reward, size, masters) for size in sizes]
    return HitPlan(
        assignments_per_hit=sizes,
        cost_per_item=sum((cost.total for cost in costs), Decimal(0)),
        fee_per_item=sum((cost.fee_total for cost in costs), Decimal(0)),
    )


def choose_mturk_packaging(
    reward: Decimal, answers_per_item: int, *, masters: bool = False, items: int = 1
) -> PackagingChoice:
    """Compare one HIT per item against HITs of at most 9 assignments, and pick the cheaper.

    With 10 or more answers wanted per item, one HIT pays the 20% large-HIT commission
    on every reward; splitting the item over several HITs of at most 9 assignments
    (sizes as even as possible) avoids it. Splitting has a cost the fee does not show:
    MTurk only keeps a worker from taking the same HIT twice, so the connector must keep
    a worker who answered one HIT of an item out of its sibling HITs (for example with a
    qualification). On equal cost the single HIT wins, because it needs no such guard,
    which is what happens when the $0.01 minimum fee swallows both commissions.

    Args:
        reward: Reward per assignment, in whole US cents.
        answers_per_item: Answers wanted per item (the overlap).
        masters: Whether the HITs require the Masters qualification.
        items: Number of items, for the total saving.

    Returns:
        The chosen plan, the rejected one and the saving per item in USD.
    """
    _check_count(answers_per_item, "answers_per_item")
    _check_count(items, "items")
    single = _hit_plan(reward, (answers_per_item,), masters)
    limit = MTURK_LARGE_HIT_ASSIGNMENTS - 1
    hits = -(-answers_per_item // limit)  # ceiling division
    base, extra = divmod(answers_per_item, hits)
    split_sizes = tuple(base + 1 if index < extra else base for index in range(hits))
    split = _hit_plan(reward, split_sizes, masters)
    if split.cost_per_item < single.cost_per_item:
        chosen, rejected = split, single
    else:
        chosen, rejected = single, split
    return PackagingChoice(
        chosen=chosen,
        rejected=rejected,
        items=items,
        saving_per_item=rejected.cost_per_item - chosen.cost_per_item,
    )


# --- Vendors ---------------------------------------------------------------------


@dataclass(frozen=True)
class VendorContract:
    """The fee terms of an outside vendor, on top of its rate card.

    The rate card says what the vendor charges per answer (and per item); the contract
    says what the vendor adds to that. Everything defaults to nothing.

    Attributes:
        currency: ISO 4217 code the vendor invoices in; must match its rate card.
        fee_rate: Share of each answer's charge added as a fee, as a fraction
            (``Decimal("0.10")`` for 10%). Rounded half-up to the micro per answer,
            so the fee is exact in storage and the invoice rounds to the cent once.
        fee_per_answer: Fixed amount in ``currency`` added per billable answer.
        minimum_per_invoice: Smallest amount in ``currency`` an invoice may come to; a
            period that comes to less is topped up by an adjustment entry.
    """

    currency: str
    fee_rate: Decimal = Decimal(0)
    fee_per_answer: Decimal = Decimal(0)
    minimum_per_invoice: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", check_currency(self.currency))
        object.__setattr__(self, "fee_rate", check_amount(self.fee_rate, "fee_rate"))
        object.__setattr__(
            self, "fee_per_answer", check_amount(self.fee_per_answer, "fee_per_answer")
        )
        object.__setattr__(
            self,
            "minimum_per_invoice",
            check_amount(self.minimum_per_invoice, "minimum_per_invoice"),
        )


def vendor_answer_fee(contract: VendorContract, charge: Decimal) -> Decimal:
    """Return the vendor's fee on one billable answer.

    Args:
        contract: The vendor's contract.
        charge: What the vendor charges for the answer, in ``contract.currency``.

    Returns:
        ``charge * fee_rate`` rounded half-up to the micro, plus ``fee_per_answer``,
        in ``contract.currency``.
    """
    value = check_amount(charge, "charge")
    return round_micros(value * contract.fee_rate) + contract.fee_per_answer


def vendor_minimum_topup(contract: VendorContract, invoiced_total: Decimal) -> Decimal:
    """Return how much brings an invoice up to the contract's minimum.

    Args:
        contract: The vendor's contract.
        invoiced_total: What the invoice comes to without the top-up, in ``contract.currency``.

    Returns:
        ``minimum_per_invoice - invoiced_total`` when positive, else zero.
    """
    value = check_amount(invoiced_total, "invoiced_total", allow_negative=True)
    return max(contract.minimum_per_invoice - value, Decimal(0))


# --- Internal pool ---------------------------------------------------------------


@dataclass(frozen=True)
class InternalPoolCost:
    """What an answer from the internal pool costs beyond its reward.

    Attributes:
        currency: ISO 4217 code of the amounts below.
        fee_per_answer: A configured overhead per accepted answer (tooling, management);
            zero means no fee, the default.
        hourly_cost: Cost of one internal worker per hour, turned into a cost per answer
            from the time the answer took; None when the pool is not costed by time.
    """

    currency: str = "USD"
    fee_per_answer: Decimal = Decimal(0)
    hourly_cost: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", check_currency(self.currency))
        object.__setattr__(
            self, "fee_per_answer", check_amount(self.fee_per_answer, "fee_per_answer")
        )
        if self.hourly_cost is not None:
            object.__setattr__(self, "hourly_cost", check_amount(self.hourly_cost, "hourly_cost"))


def internal_time_cost(rule: InternalPoolCost, seconds_spent: Decimal | int) -> Decimal:
    """Return the cost of the time one internal answer took.

    Args:
        rule: The internal pool's cost rule.
        seconds_spent: Seconds from lease to submission (not negative).

    Returns:
        ``hourly_cost * seconds_spent / 3600`` rounded half-up to the micro, in
        ``rule.currency``; zero when the pool has no hourly cost.
    """
    seconds = check_amount(seconds_spent, "seconds_spent")
    if rule.hourly_cost is None:
        return Decimal(0)
    return round_micros(rule.hourly_cost * seconds / SECONDS_PER_HOUR)


FeeRule = MTurkFeeRule | VendorContract | InternalPoolCost
"""The fee rule of a workforce; its type says which kind of workforce it is."""


def fee_rule_currency(rule: FeeRule) -> str:
    """Return the currency a fee rule's amounts are in (MTurk is always USD)."""
    if isinstance(rule, MTurkFeeRule):
        return MTURK_CURRENCY
    return rule.currency


def check_same_currency(rule: FeeRule, currency: str) -> None:
    """Raise CurrencyMismatchError unless ``rule`` is in ``currency``."""
    expected = fee_rule_currency(rule)
    if currency != expected:
        raise CurrencyMismatchError(expected, currency, context=type(rule).__name__)
