"""Property tests for billing in the service: random campaigns, every backend.

A campaign is a project with a budget, an internal pool and maybe a vendor, and a
random sequence of dispatch, lease, answer, expiry, cancel, exclusion (a worker
blocked), rejection and rate changes. Each step runs in its own savepoint, like a
request, and is rolled back when it raises (a 409 over budget, nothing pending).

After every step, committed plus reserved money is within the project's (and the
workforce's) budget. At the end, the ledger, the cost reports, the cost per label,
the vendor's invoice and each answer's rate agree to the micro (and so to the cent).
"""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from billing import ledger as book
from billing.errors import BudgetExceededError
from billing.money import round_cents, to_micros
from billing.rates import RateCard as Terms
from billing.rates import rate_for
from connectors.base import BatchSpec, SubmissionRef
from connectors.internal import InternalPoolConnector
from orchestrator.db import utcnow
from orchestrator.errors import ConflictError
from orchestrator.models import (
    Answer,
    Assignment,
    Item,
    LedgerEntry,
    Project,
    RateCard,
    Vendor,
    Worker,
    Workforce,
)
from orchestrator.services import budgets, cost_reports, dispatch, invoices, ledger, pool
from orchestrator.services.answers import Slot, accept_answer, block_worker, reopen_slots
from orchestrator.services.projects import create_project
from orchestrator.services.rate_cards import (
    EPOCH,
    card_terms,
    create_rate_card,
    fee_rule_for,
    pricing_for,
)

EXPLORE = "QUORUM_PROPERTY_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("QUORUM_PROPERTY_EXAMPLES", "25"))
LABELS = ["a", "b"]


def cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda n: Decimal(n) / 100)


class PushConnector(InternalPoolConnector):
    """A vendor that is sent its work (gold slots up front), as a push connector is."""

    kind = "vendor"
    is_pull = False

    def publish(self, batch: BatchSpec) -> SubmissionRef:
        return SubmissionRef(batch_id=batch.batch_id, external_ref=f"push-{batch.batch_id}")


@dataclass(frozen=True)
class Plan:
    reward: Decimal
    budget: Decimal
    overlap: int
    gold_rate: float
    items: int
    gold: int
    internal_card: tuple[Decimal, Decimal] | None
    vendor_card: tuple[Decimal, Decimal | None, bool, Decimal] | None
    workforce_budget: Decimal | None
    steps: list[tuple[Any, ...]] = field(default_factory=list)


STEPS = st.one_of(
    st.tuples(
        st.just("dispatch"),
        st.sampled_from(["internal", "vendor"]),
        st.integers(1, 3),
        st.integers(1, 2),
    ),
    st.tuples(st.just("lease"), st.integers(0, 3)),
    st.tuples(st.just("work"), st.integers(0, 3), st.sampled_from(LABELS)),
    st.tuples(st.just("work"), st.integers(0, 3), st.sampled_from(LABELS)),
    st.tuples(st.just("work"), st.integers(0, 3), st.sampled_from(LABELS)),
    st.tuples(st.just("answer"), st.integers(0, 9), st.sampled_from(LABELS)),
    st.tuples(st.just("answer"), st.integers(0, 9), st.sampled_from(LABELS)),
    st.tuples(
        st.just("vendor_answer"), st.integers(0, 30), st.integers(0, 3), st.sampled_from(LABELS)
    ),
    st.tuples(st.just("expire"), st.integers(0, 9)),
    st.tuples(
        st.just("vendor_answer"), st.integers(0, 30), st.integers(0, 3), st.sampled_from(LABELS)
    ),
    st.tuples(st.just("work"), st.integers(0, 3), st.sampled_from(LABELS)),
    st.tuples(st.just("cancel"), st.integers(0, 4)),
    st.tuples(st.just("exclude"), st.sampled_from(["internal", "vendor"]), st.integers(0, 3)),
    st.tuples(st.just("reject"), st.integers(0, 30)),
    st.tuples(st.just("rate"), st.sampled_from(["internal", "vendor"]), cents(0, 30)),
)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    return Plan(
        reward=draw(cents(0, 20)),
        budget=draw(cents(20, 500)),
        overlap=draw(st.integers(1, 3)),
        gold_rate=draw(st.sampled_from([0.0, 0.25, 0.4])),
        items=draw(st.integers(1, 5)),
        gold=draw(st.integers(0, 3)),
        internal_card=draw(st.tuples(cents(0, 20), cents(0, 3)) | st.none()),
        vendor_card=draw(
            st.tuples(
                cents(1, 20),
                st.none() | cents(0, 20),
                st.booleans(),
                st.sampled_from([Decimal(0), Decimal("0.1"), Decimal("0.25")]),
            )
            | st.none()
        ),
        workforce_budget=draw(st.none() | cents(10, 200)),
        # Work first goes out, then anything may happen.
        steps=[("dispatch", "internal", 2, 1), ("dispatch", "vendor", 5, 2)]
        + draw(st.lists(STEPS, min_size=6, max_size=20)),
    )


@pytest.fixture
def push_vendors(monkeypatch: pytest.MonkeyPatch) -> None:
    real = dispatch.connector_for

    def connector_for(workforce: Workforce) -> Any:
        return PushConnector({}) if workforce.kind == "vendor" else real(workforce)

    monkeypatch.setattr(dispatch, "connector_for", connector_for)


class World:
    """One campaign's rows, and the steps that drive it through the services."""

    def __init__(self, session: Session, plan: Plan, tag: str) -> None:
        self.session, self.plan = session, plan
        self.project = create_project(
            session,
            name="property",
            labels=LABELS,
            overlap=plan.overlap,
            max_overlap=plan.overlap,
            gold_rate=plan.gold_rate,
            gold_min_answers=2,
            gold_accuracy_threshold=0.7,
            reward=plan.reward,
            budget=plan.budget,
        )
        self.internal = self._workforce(f"pool-{tag}", "internal", None)
        if plan.workforce_budget is not None:
            budgets.set_workforce_budget(session, self.internal, plan.workforce_budget)
        if plan.internal_card is not None:
            price, fee = plan.internal_card
            create_rate_card(
                session,
                workforce_id=self.internal.id,
                price_per_answer=price,
                fees={"fee_per_answer": fee},
            )
        self.vendor: Workforce | None = None
        if plan.vendor_card is not None:
            vendor = Vendor(name=f"vendor-{tag}")
            session.add(vendor)
            session.flush()
            self.vendor = self._workforce(f"vendor-{tag}", "vendor", vendor.id)
            price, gold_price, billable, fee_rate = plan.vendor_card
            create_rate_card(
                session,
                workforce_id=self.vendor.id,
                price_per_answer=price,
                price_per_gold_answer=gold_price,
                gold_billable=billable,
                fees={"fee_rate": fee_rate},
            )
        session.add_all(
            [
                Item(project_id=self.project.id, external_id=f"i{n}", data={"n": n})
                for n in range(plan.items)
            ]
            + [
                Item(project_id=self.project.id, external_id=f"g{n}", data={}, gold_label="a")
                for n in range(plan.gold)
            ]
        )
        self.workers = {
            "internal": self._workers(self.internal),
            "vendor": self._workers(self.vendor) if self.vendor else [],
        }
        self.leases: list[tuple[int, str]] = []
        self.repriced = False
        session.flush()

    def _workforce(self, name: str, kind: str, vendor_id: int | None) -> Workforce:
        workforce = Workforce(name=name, kind=kind, connector="internal", vendor_id=vendor_id)
        self.session.add(workforce)
        self.session.flush()
        return workforce

    def _workers(self, workforce: Workforce) -> list[int]:
        workers = [Worker(workforce_id=workforce.id, external_id=f"w{n}") for n in range(4)]
        self.session.add_all(workers)
        self.session.flush()
        return [worker.id for worker in workers]

    # --- steps ----------------------------------------------------------------------

    def run(self, step: tuple[Any, ...]) -> None:
        try:
            getattr(self, f"step_{step[0]}")(*step[1:])
        except BudgetExceededError:
            # Only dispatch is refused for money: an answer's cost was reserved when its
            # slot went out, unless a new rate card changed the price since.
            assert step[0] == "dispatch" or self.repriced, step
            raise

    def step_dispatch(self, target: str, max_items: int, batch_size: int) -> None:
        workforce = self.internal if target == "internal" or self.vendor is None else self.vendor
        slots_before = self._count(Assignment)
        try:
            made = dispatch.dispatch(
                self.session,
                self.project.id,
                workforce_id=workforce.id,
                max_items=max_items,
                batch_size=batch_size,
                seed=0,
            )
        except BudgetExceededError:
            # Refused before anything was made: all or nothing.
            assert self._count(Assignment) == slots_before
            raise
        # Every slot holds its expected cost, and the batch records their sum.
        price = pricing_for(self.session, project_id=self.project.id, workforce_id=workforce.id)
        regular, gold = (to_micros(cost) for cost in budgets.slot_costs(price))
        for batch in made:
            slots = self.session.execute(
                sa.select(Assignment.is_gold, Assignment.reserved_micros).where(
                    Assignment.batch_id == batch.id
                )
            ).all()
            assert all(held == (gold if is_gold else regular) for is_gold, held in slots)
            assert sum(held for _, held in slots) == batch.reserved_micros

    def step_lease(self, worker: int) -> None:
        worker_id = self.workers["internal"][worker]
        lease = pool.next_task(self.session, worker_id=worker_id, default_lease_seconds=600)
        if lease is not None:
            self.leases.append((worker_id, lease.token))

    def step_work(self, worker: int, label: str) -> None:
        self.step_lease(worker)
        self.step_answer(len(self.leases) - 1, label)

    def step_answer(self, index: int, label: str) -> None:
        if not self.leases:
            return
        worker_id, token = self.leases.pop(index % len(self.leases))
        pool.submit_answer(self.session, worker_id=worker_id, token=token, label=label)

    def step_vendor_answer(self, pick: int, worker: int, label: str) -> None:
        if self.vendor is None:
            return
        slots = self.session.execute(
            sa.select(Assignment, Item.gold_label)
            .join(Item, Item.id == Assignment.item_id)
            .where(Assignment.workforce_id == self.vendor.id, Assignment.status == "open")
            .order_by(Assignment.id)
        ).all()
        if not slots:
            return
        slot, gold_label = slots[pick % len(slots)]
        worker_id = self.workers["vendor"][worker]
        answered = self.session.scalar(
            sa.select(Answer.id).where(
                Answer.item_id == slot.item_id, Answer.worker_id == worker_id
            )
        )
        if answered is not None:
            return  # a worker answers an item once
        accept_answer(
            self.session,
            slot=Slot(
                slot.id,
                slot.item_id,
                slot.project_id,
                slot.batch_id,
                slot.workforce_id,
                slot.is_gold,
            ),
            worker_id=worker_id,
            label=label,
            gold_label=gold_label,
        )

    def step_expire(self, index: int) -> None:
        if not self.leases:
            return
        _, token = self.leases.pop(index % len(self.leases))
        self.session.execute(
            sa.update(Assignment)
            .where(Assignment.lease_token == token)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        pool.expire_leases(self.session)

    def step_cancel(self, index: int) -> None:
        batch_ids = self.session.scalars(
            sa.select(Assignment.batch_id).distinct().order_by(Assignment.batch_id)
        ).all()
        if batch_ids:
            dispatch.cancel_batch(self.session, batch_ids[index % len(batch_ids)])

    def step_exclude(self, target: str, worker: int) -> None:
        workers = self.workers[target]
        if workers:
            project = self.session.get(Project, self.project.id)
            block_worker(self.session, project, workers[worker], reason="property test")

    def step_reject(self, pick: int) -> None:
        """Reject an accepted answer as a review would: reverse its cost, reopen its slot."""
        answers = self.session.scalars(
            sa.select(Answer)
            .where(Answer.status == "accepted", Answer.is_gold.is_(False))
            .order_by(Answer.id)
        ).all()
        if not answers:
            return
        answer = answers[pick % len(answers)]
        answer.status = "rejected"
        self.session.execute(
            sa.update(Item)
            .where(Item.id == answer.item_id)
            .values(answer_count=Item.answer_count - 1)
        )
        ledger.reverse_answers(self.session, [answer.id], memo="rejected")
        if answer.assignment_id is not None:
            reopen_slots(
                self.session, Assignment.id == answer.assignment_id, ended_status="excluded"
            )

    def step_rate(self, target: str, price: Decimal) -> None:
        workforce = self.internal if target == "internal" or self.vendor is None else self.vendor
        fees = {"fee_rate": Decimal("0.1")} if workforce.kind == "vendor" else {}
        create_rate_card(self.session, workforce_id=workforce.id, price_per_answer=price, fees=fees)
        self.repriced = True

    def _count(self, model: Any) -> int:
        return self.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0

    # --- checks ---------------------------------------------------------------------

    def check_budgets(self) -> None:
        project = self.session.get(Project, self.project.id)
        state = budgets.project_state(self.session, project)
        assert state.limit is not None and state.in_use <= state.limit, state
        if self.plan.workforce_budget is not None:
            internal = budgets.workforce_state(self.session, self.internal, project.currency)
            assert internal.in_use <= self.plan.workforce_budget, internal

    def check_reservations(self) -> None:
        """Until a price changes, every live slot holds exactly its expected cost."""
        if self.repriced:
            return
        costs = {}
        for workforce in (self.internal, self.vendor):
            if workforce is not None:
                price = pricing_for(
                    self.session, project_id=self.project.id, workforce_id=workforce.id
                )
                regular, gold = budgets.slot_costs(price)
                costs[(workforce.id, False)] = to_micros(regular)
                costs[(workforce.id, True)] = to_micros(gold)
        live = self.session.execute(
            sa.select(
                Assignment.workforce_id, Assignment.is_gold, Assignment.reserved_micros
            ).where(Assignment.status.in_(("open", "leased")))
        ).all()
        for workforce_id, is_gold, held in live:
            assert held == costs[(workforce_id, is_gold)], (workforce_id, is_gold, held)

    def entries(self) -> list[book.LedgerEntry]:
        return ledger.load_entries(self.session, LedgerEntry.project_id == self.project.id)

    def check_reports(self) -> None:
        entries = self.entries()
        total = book.total(entries)
        for group_by in cost_reports.GROUPS:
            report = cost_reports.cost_report(
                self.session, group_by=group_by, project_id=self.project.id
            )
            assert sum((t.total for t in report.totals), Decimal(0)) == total
            expected = {
                None if key is None else str(key): amount
                for key, amount in book.group_totals(entries, group_by).items()
            }
            assert {g.key: g.cost.total for g in report.groups} == expected, group_by

    def check_cost_per_label(self) -> None:
        answered = sa.select(Answer.item_id).where(Answer.status == "accepted")
        self.session.execute(
            sa.update(Item)
            .where(Item.project_id == self.project.id, Item.id.in_(answered))
            .values(label="a")
        )
        labelled = self.session.scalar(
            sa.select(sa.func.count()).where(
                Item.project_id == self.project.id,
                Item.label.is_not(None),
                Item.gold_label.is_(None),
            )
        )
        result = cost_reports.cost_per_label(self.session, self.project.id)
        expected = book.cost_breakdown(self.entries(), labelled, currency="USD")
        assert (result.total, result.rewards, result.fees, result.gold, result.other) == (
            expected.total,
            expected.rewards,
            expected.fees,
            expected.gold,
            expected.other,
        )
        assert result.cost_per_label == expected.per_label
        assert result.cost_per_label_without_gold == expected.per_label_without_gold

    def check_answer_rates(self) -> None:
        """Each answer's entries are what its card in force when accepted says."""
        cards: dict[int, list[Any]] = {}
        for card in self.session.scalars(sa.select(RateCard)):
            cards.setdefault(card.workforce_id, []).append(card)
        by_answer: dict[int, list[book.LedgerEntry]] = {}
        for entry in self.entries():
            if entry.answer_id is not None:
                by_answer.setdefault(entry.answer_id, []).append(entry)
        for answer in self.session.scalars(sa.select(Answer).order_by(Answer.id)):
            workforce = self.session.get(Workforce, answer.workforce_id)
            stored = by_answer.get(answer.id, [])
            charged = [(e.kind, e.amount) for e in stored if e.kind is not book.EntryKind.REVERSAL]
            assert charged == self._expected(answer, workforce, cards.get(workforce.id, []))
            net = sum((e.amount for e in stored), Decimal(0))
            if answer.status == "accepted":
                assert len(charged) == len(stored)
            else:
                assert net == 0, (answer.status, stored)

    def _expected(self, answer: Answer, workforce: Workforce, rows: list[Any]) -> list[Any]:
        in_force = [card_terms(row) for row in rows if row.effective_from <= answer.created_at]
        if in_force:
            card = rate_for(in_force, answer.created_at)
            row = next(r for r in rows if r.effective_from == card.effective_from)
            terms = row.fee_rule
        else:
            card, terms = Terms(effective_from=EPOCH, price_per_answer=self.plan.reward), {}
        rule = fee_rule_for(workforce.kind, terms, currency="USD", overlap=self.plan.overlap)
        entries = book.entries_for_accepted_answer(
            card=card,
            fee_rule=rule,
            is_gold=answer.is_gold,
            occurred_at=answer.created_at,
            refs=book.EntryRefs(vendor_id=workforce.vendor_id),
        )
        return [(e.kind, e.amount) for e in entries]

    def check_invoice(self) -> None:
        if self.vendor is None:
            return
        vendor_entries = ledger.load_entries(
            self.session, LedgerEntry.vendor_id == self.vendor.vendor_id
        )
        if not vendor_entries:
            return
        stored = invoices.create_invoice(
            self.session,
            vendor_id=self.vendor.vendor_id,
            period_start=date(2000, 1, 1),
            period_end=date(2100, 1, 1),
        )
        exact = book.total(vendor_entries)
        assert stored.invoice.exact_total_micros == int(exact * 1_000_000)
        assert stored.invoice.total_micros == int(round_cents(exact) * 1_000_000)
        assert sum(line.amount_micros for line in stored.lines) == stored.invoice.total_micros
        assert invoices.entry_ids(self.session, stored.invoice.id) == sorted(
            e.id for e in vendor_entries
        )
        issued = invoices.issue_invoice(self.session, stored.invoice.id)
        assert issued.invoice.status == "issued"


@contextlib.contextmanager
def example_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose whole example is rolled back, so examples never see each other."""
    with sessions() as session:
        outer = session.begin()
        try:
            yield session
        finally:
            outer.rollback()


@settings(
    max_examples=EXAMPLES,
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(plan=plans())
def test_random_campaigns_keep_budgets_and_reconcile(
    sessions: sessionmaker[Session], push_vendors: None, plan: Plan
) -> None:
    with example_session(sessions) as session:
        world = World(session, plan, tag=str(id(plan)))
        world.check_budgets()
        for step in plan.steps:
            savepoint = session.begin_nested()
            try:
                world.run(step)
            except (BudgetExceededError, ConflictError):
                savepoint.rollback()
            else:
                savepoint.commit()
            world.check_budgets()
            world.check_reservations()
        world.check_answer_rates()
        world.check_reports()
        world.check_cost_per_label()
        world.check_invoice()
