"""Budgets: reserve on dispatch, commit on accepted answer, release on cancel or expiry.

A budget's state is never stored as a running counter; it is read from the rows
that already say where the money is, so no hot path updates a shared row:

* committed = the sum of the ledger entries (of the project, or of the workforce);
* reserved = the `reserved_micros` of the open and leased slots (and of answered slots
  awaiting review, below), plus pending bonuses.

Each step of a slot's life then moves money by itself:

* dispatch writes each new slot's expected cost (billing.budget.expected_slot_cost)
  into `Assignment.reserved_micros` after checking that all of them fit (all or
  nothing); `Batch.reserved_micros` records what the batch reserved when dispatched;
* an accepted answer turns its slot to `answered` (no longer reserved) and writes
  its ledger entries (committed): the reservation becomes the cost. When the cost
  differs from the reservation (a new rate card), the difference is checked like a
  new reservation (billing.budget.commit) and the slot keeps the actual cost;
* a cancelled slot stops counting; an expired, released or excluded slot is
  replaced by a fresh open slot carrying the same reservation, and an exclusion's
  reversal takes the cost back off the ledger, so the money moves back to reserved;
* an answer from a workforce that charges at review (MTurk pays on approval, see
  orchestrator.services.mturk_review) has no ledger entry when it is stored, so its
  answered slot stays reserved until the approval writes the entries or the
  rejection marks the answer rejected: between the two, dispatch still sees the money.

The arithmetic (what fits, what is left) is billing.budget's; this module only
reads the amounts. Checks take the project's row lock, the same lock dispatch
holds, so two requests cannot both spend the last dollar.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing import budget
from billing.errors import BudgetExceededError
from billing.money import format_amount, from_micros, to_micros
from orchestrator.models import (
    Answer,
    Assignment,
    Batch,
    Bonus,
    LedgerEntry,
    Project,
    RateCard,
    Workforce,
)
from orchestrator.services.projects import get_project
from orchestrator.services.rate_cards import Pricing, pricing_for

LIVE_SLOT_STATUSES = ("open", "leased")
# Workforces whose answers are charged when reviewed, not when stored (the ledger
# skips them at acceptance: orchestrator.services.ledger).
CHARGED_ON_REVIEW = ("mturk",)


@dataclass(frozen=True)
class BudgetReport:
    """A budget now: its limit, what is committed and reserved, and what is left."""

    scope: str
    scope_id: int
    currency: str
    limit: Decimal | None
    committed: Decimal
    reserved: Decimal
    remaining: Decimal | None

    @property
    def in_use(self) -> Decimal:
        """Committed plus reserved."""
        return self.committed + self.reserved


def _committed_micros(session: Session, condition: sa.ColumnElement[bool]) -> int:
    """Sum the ledger entries that match `condition`, in micros."""
    total = session.scalar(sa.select(sa.func.sum(LedgerEntry.amount_micros)).where(condition))
    return int(total or 0)


def _reserved_micros(
    session: Session,
    slot_condition: sa.ColumnElement[bool],
    bonus_condition: sa.ColumnElement[bool],
) -> int:
    """Sum the reservations of live slots and pending bonuses that match, in micros."""
    slots = session.scalar(
        sa.select(sa.func.sum(Assignment.reserved_micros)).where(
            slot_condition,
            sa.or_(Assignment.status.in_(LIVE_SLOT_STATUSES), _awaiting_review()),
        )
    )
    bonuses = session.scalar(
        sa.select(sa.func.sum(Bonus.cost_micros)).where(bonus_condition, Bonus.status == "pending")
    )
    return int(slots or 0) + int(bonuses or 0)


def _awaiting_review() -> sa.ColumnElement[bool]:
    """An answered slot charged at review whose accepted answer is not on the ledger yet."""
    unsettled = sa.exists().where(
        Answer.assignment_id == Assignment.id,
        Answer.status == "accepted",
        ~sa.exists().where(LedgerEntry.answer_id == Answer.id),
    )
    return sa.and_(
        Assignment.status == "answered",
        Assignment.workforce_id.in_(
            sa.select(Workforce.id).where(Workforce.kind.in_(CHARGED_ON_REVIEW))
        ),
        unsettled,
    )


def _state(
    limit_micros: int | None, committed: int, reserved: int, currency: str
) -> budget.BudgetState:
    # A ledger that nets below zero (refunds) frees nothing: count it as nothing spent.
    return budget.BudgetState(
        limit=None if limit_micros is None else from_micros(limit_micros),
        committed=from_micros(max(committed, 0)),
        reserved=from_micros(reserved),
        currency=currency,
    )


def project_state(session: Session, project: Project) -> budget.BudgetState:
    """Return a project's budget state (limit None: no budget)."""
    return _state(
        project.budget_micros,
        _committed_micros(session, LedgerEntry.project_id == project.id),
        _reserved_micros(
            session, Assignment.project_id == project.id, Bonus.project_id == project.id
        ),
        project.currency,
    )


def workforce_state(session: Session, workforce: Workforce, currency: str) -> budget.BudgetState:
    """Return a workforce's budget state in `currency` (its ledger in that currency)."""
    return _state(
        workforce.budget_micros,
        _committed_micros(
            session,
            sa.and_(LedgerEntry.workforce_id == workforce.id, LedgerEntry.currency == currency),
        ),
        _reserved_micros(
            session,
            sa.and_(
                Assignment.workforce_id == workforce.id,
                Assignment.project_id.in_(
                    sa.select(Project.id).where(Project.currency == currency)
                ),
            ),
            sa.and_(Bonus.workforce_id == workforce.id, Bonus.currency == currency),
        ),
        currency,
    )


def _report(scope: str, scope_id: int, state: budget.BudgetState) -> BudgetReport:
    return BudgetReport(
        scope=scope,
        scope_id=scope_id,
        currency=state.currency,
        limit=state.limit,
        committed=state.committed,
        reserved=state.reserved,
        remaining=state.remaining,
    )


def project_budget(session: Session, project_id: int) -> BudgetReport:
    """Report a project's budget: limit, committed, reserved and remaining."""
    project = get_project(session, project_id)
    return _report("project", project.id, project_state(session, project))


def workforce_budget(session: Session, workforce: Workforce, currency: str) -> BudgetReport:
    """Report a workforce's budget in one currency."""
    return _report("workforce", workforce.id, workforce_state(session, workforce, currency))


def workforce_currency(session: Session, workforce: Workforce) -> str:
    """The currency a workforce's budget is kept in: its newest rate card's, else USD."""
    currency = session.scalar(
        sa.select(RateCard.currency)
        .where(RateCard.workforce_id == workforce.id)
        .order_by(RateCard.effective_from.desc())
        .limit(1)
    )
    return currency or "USD"


def set_workforce_budget(session: Session, workforce: Workforce, limit: Decimal | None) -> None:
    """Set or clear (None) a workforce's spending limit."""
    workforce.budget_micros = None if limit is None else to_micros(limit)
    session.flush()


def _locked_states(
    session: Session, project_id: int, workforce_id: int, currency: str
) -> list[tuple[str, budget.BudgetState]]:
    """Lock the project row and return the budgets that apply (project, then workforce)."""
    project = get_project(session, project_id, for_update=True)
    states = [("project", project_state(session, project))]
    workforce = session.get(Workforce, workforce_id)
    if workforce is not None and workforce.budget_micros is not None:
        states.append(("workforce", workforce_state(session, workforce, currency)))
    return states


def _has_budget(session: Session, project_id: int, workforce_id: int) -> bool:
    row = session.execute(
        sa.select(Project.budget_micros, Workforce.budget_micros)
        .select_from(Project)
        .join(Workforce, Workforce.id == workforce_id)
        .where(Project.id == project_id)
    ).one()
    return row[0] is not None or row[1] is not None


def _exceeded(scope: str, error: BudgetExceededError, **details: str) -> BudgetExceededError:
    error.details.update(budget=scope, **details)
    return error


def slot_costs(pricing: Pricing) -> tuple[Decimal, Decimal]:
    """Return the expected cost of one ordinary slot and of one gold slot."""

    def cost(is_gold: bool) -> Decimal:
        return budget.expected_slot_cost(
            card=pricing.card,
            fee_rule=pricing.fee_rule,
            is_gold=is_gold,
            reward=pricing.reward,
            expected_seconds=pricing.expected_seconds,
        )

    return cost(False), cost(True)


@dataclass
class DispatchReservation:
    """The money a dispatch sets aside: checked in full up front, then written per batch."""

    slot_micros: int
    gold_slot_micros: int
    currency: str
    states: list[tuple[str, budget.BudgetState]] = field(default_factory=list)

    def apply(self, session: Session, batch: Batch) -> None:
        """Write each open slot's reservation and the batch's total, within the budgets."""
        counts = dict(
            session.execute(
                sa.select(Assignment.is_gold, sa.func.count())
                .where(Assignment.batch_id == batch.id, Assignment.status == "open")
                .group_by(Assignment.is_gold)
            ).all()
        )
        regular, gold = counts.get(False, 0), counts.get(True, 0)
        amount = from_micros(regular * self.slot_micros + gold * self.gold_slot_micros)
        # The up-front check makes this a formality; it still guards a dispatch whose
        # batches come out larger than planned.
        self.states = [
            (scope, _reserve(scope, state, amount, regular + gold)) for scope, state in self.states
        ]
        session.execute(
            sa.update(Assignment)
            .where(Assignment.batch_id == batch.id, Assignment.status == "open")
            .values(
                reserved_micros=sa.case(
                    (Assignment.is_gold.is_(True), self.gold_slot_micros),
                    else_=self.slot_micros,
                )
            )
            .execution_options(synchronize_session=False)
        )
        batch.reserved_micros = to_micros(amount)


def _reserve(
    scope: str, state: budget.BudgetState, amount: Decimal, slots: int
) -> budget.BudgetState:
    try:
        return budget.reserve(state, amount)
    except BudgetExceededError as exc:
        raise _exceeded(scope, exc, slots=str(slots)) from exc


def plan_dispatch(
    session: Session,
    project: Project,
    workforce: Workforce,
    pending: Sequence[tuple[int, int]],
    gold_ids: Sequence[int],
    batch_size: int,
    *,
    is_pull: bool,
) -> DispatchReservation:
    """Check that a whole dispatch fits the budgets before any batch is made; 409 if not.

    Args:
        session: The dispatch's session; the caller holds the project's row lock.
        project: The project dispatched.
        workforce: The workforce dispatched to.
        pending: `(item_id, slots)` to dispatch.
        gold_ids: The project's gold items.
        batch_size: Items per batch.
        is_pull: Whether the workforce pulls (its gold slots are made, and reserved, on
            demand) or is pushed gold slots up front.

    Raises:
        BudgetExceededError: The slots' expected cost does not fit the project's (or the
            workforce's) budget; details say what was requested and what is left.
    """
    from orchestrator.services.dispatch import gold_sample_size  # dispatch imports us

    price = pricing_for(session, project_id=project.id, workforce_id=workforce.id)
    slot_cost, gold_cost = slot_costs(price)
    regular = sum(count for _, count in pending)
    gold = 0
    if not is_pull and gold_ids:
        for start in range(0, len(pending), batch_size):
            chunk = len(pending[start : start + batch_size])
            gold += min(len(gold_ids), gold_sample_size(chunk, project.gold_rate)) * project.overlap
    amount = slot_cost * regular + gold_cost * gold
    states = [("project", project_state(session, project))]
    if workforce.budget_micros is not None:
        states.append(("workforce", workforce_state(session, workforce, price.card.currency)))
    for scope, state in states:
        try:
            budget.reserve(state, amount)
        except BudgetExceededError as exc:
            affordable = budget.max_affordable(state, slot_cost)
            raise _exceeded(
                scope,
                exc,
                slots=str(regular + gold),
                slot_cost=format_amount(slot_cost),
                affordable_slots=str(affordable if affordable is not None else regular + gold),
            ) from exc
    return DispatchReservation(
        slot_micros=to_micros(slot_cost),
        gold_slot_micros=to_micros(gold_cost),
        currency=price.card.currency,
        states=states,
    )


def reserve_slot(
    session: Session,
    project_id: int,
    workforce_id: int,
    *,
    gold: bool,
    pricing: Pricing | None = None,
    budgeted: bool | None = None,
) -> int | None:
    """Return what to reserve for one slot made after dispatch, or None if it does not fit.

    Slots are made after dispatch in two places: the internal pool makes a worker's
    gold slot when it is their turn for gold (if the budget cannot take it, the
    worker gets an ordinary, already reserved task instead), and dynamic overlap
    adds a slot for an unsure item (if the budget cannot take it, the item stops).
    A caller making several slots passes the `pricing` it loaded once; a caller that
    read the project's and workforce's `budget_micros` passes whether either is set
    (`budgeted`), which saves a query.
    """
    slot_cost, gold_cost = slot_costs(
        pricing or pricing_for(session, project_id=project_id, workforce_id=workforce_id)
    )
    cost = gold_cost if gold else slot_cost
    if budgeted is None:
        budgeted = _has_budget(session, project_id, workforce_id)
    if not budgeted:
        return to_micros(cost)
    states = _locked_states(session, project_id, workforce_id, _currency(session, project_id))
    try:
        for _, state in states:
            budget.reserve(state, cost)
    except BudgetExceededError:
        return None
    return to_micros(cost)


def check_commit(
    session: Session,
    *,
    project_id: int,
    workforce_id: int,
    currency: str,
    reserved_micros: int,
    actual_micros: int,
) -> None:
    """Check that an answer costing more than its slot's reservation fits the budgets.

    Called before the answer's entries are written and after its slot stopped
    counting as reserved. Raises BudgetExceededError (409) when the excess does not
    fit; the answer is then not stored, and the worker's lease stays valid.
    """
    if actual_micros <= reserved_micros or not _has_budget(session, project_id, workforce_id):
        return
    reserved, actual = from_micros(reserved_micros), from_micros(actual_micros)
    for scope, state in _locked_states(session, project_id, workforce_id, currency):
        # The slot is already answered, so put its reservation back before committing it.
        held = budget.BudgetState(
            limit=state.limit,
            committed=state.committed,
            reserved=state.reserved + reserved,
            currency=state.currency,
        )
        try:
            budget.commit(held, reserved, actual)
        except BudgetExceededError as exc:
            raise _exceeded(scope, exc) from exc


def check_spend(
    session: Session, *, project_id: int, spend: Sequence[tuple[int, str, Decimal]]
) -> None:
    """Check that unreserved spending (bonuses) fits the project's and workforces' budgets.

    Args:
        session: The session; the project's row is locked.
        project_id: The project paying.
        spend: `(workforce_id, currency, amount)` per payment.

    Raises:
        BudgetExceededError: The total does not fit a budget.
    """
    project = get_project(session, project_id, for_update=True)
    total = sum((amount for _, _, amount in spend), Decimal(0))
    try:
        budget.reserve(project_state(session, project), total)
    except BudgetExceededError as exc:
        raise _exceeded("project", exc) from exc
    per_workforce: dict[tuple[int, str], Decimal] = {}
    for workforce_id, currency, amount in spend:
        key = (workforce_id, currency)
        per_workforce[key] = per_workforce.get(key, Decimal(0)) + amount
    for (workforce_id, currency), amount in per_workforce.items():
        workforce = session.get(Workforce, workforce_id)
        if workforce is None or workforce.budget_micros is None:
            continue
        try:
            budget.reserve(workforce_state(session, workforce, currency), amount)
        except BudgetExceededError as exc:
            raise _exceeded("workforce", exc, workforce_id=str(workforce_id)) from exc


def _currency(session: Session, project_id: int) -> str:
    return str(session.scalar(sa.select(Project.currency).where(Project.id == project_id)))
