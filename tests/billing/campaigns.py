"""Hypothesis strategies for random labeling campaigns, shared by the billing property tests.

A campaign is a few workforces (MTurk, vendors, internal pool) and a stream of
accepted answers, some later rejected, some with bonuses. ``play`` turns it into
ledger entries the way the orchestrator will, and remembers what each answer
should cost so the tests can check the ledger against an independent sum.
"""

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from billing.fees import FeeRule, InternalPoolCost, MTurkFeeRule, VendorContract, mturk_bonus_fee
from billing.ledger import (
    EntryRefs,
    LedgerEntry,
    answer_cost,
    entries_for_accepted_answer,
    entries_for_bonus,
    reverse,
)
from billing.rates import RateCard

START = datetime(2024, 1, 1, tzinfo=UTC)
CURRENCY = "USD"


def cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    """Whole-cent amounts between low and high cents."""
    return st.integers(low, high).map(lambda n: Decimal(n) / 100)


def micros(low: int, high: int) -> st.SearchStrategy[Decimal]:
    """Micro-precision amounts between low and high micros."""
    return st.integers(low, high).map(lambda n: Decimal(n) / 1_000_000)


@dataclass(frozen=True)
class Workforce:
    workforce_id: int
    card: RateCard
    fee_rule: FeeRule
    vendor_id: int | None


@dataclass(frozen=True)
class AnswerEvent:
    workforce: int  # index into the campaign's workforces
    project_id: int
    batch_id: int
    worker_id: int
    is_gold: bool
    accepted_after: timedelta
    rejected_after: timedelta | None  # None: the answer stays accepted
    bonus: Decimal | None
    seconds_spent: int
    arrival_delay: timedelta  # how late the entry reaches the ledger after it occurred


@dataclass(frozen=True)
class Campaign:
    workforces: tuple[Workforce, ...]
    answers: tuple[AnswerEvent, ...]


@st.composite
def workforces(draw: st.DrawFn, workforce_id: int) -> Workforce:
    kind = draw(st.sampled_from(["mturk", "vendor", "internal"]))
    if kind == "mturk":
        card = RateCard(effective_from=START, price_per_answer=draw(cents(1, 300)))
        rule: FeeRule = MTurkFeeRule(
            assignments_per_hit=draw(st.integers(1, 15)), masters=draw(st.booleans())
        )
        return Workforce(workforce_id, card, rule, None)
    if kind == "vendor":
        card = RateCard(
            effective_from=START,
            price_per_answer=draw(micros(0, 500_000)),
            price_per_item=draw(st.none() | micros(0, 900_000)),
            price_per_gold_answer=draw(st.none() | micros(0, 500_000)),
            gold_billable=draw(st.booleans()),
        )
        rule = VendorContract(
            currency=CURRENCY,
            fee_rate=draw(st.integers(0, 300).map(lambda n: Decimal(n) / 1000)),
            fee_per_answer=draw(micros(0, 20_000)),
        )
        return Workforce(workforce_id, card, rule, vendor_id=draw(st.integers(1, 3)))
    card = RateCard(effective_from=START, price_per_answer=draw(cents(0, 50)))
    rule = InternalPoolCost(
        fee_per_answer=draw(st.sampled_from([Decimal(0), Decimal("0.01")])),
        hourly_cost=draw(st.none() | cents(1000, 4000)),
    )
    return Workforce(workforce_id, card, rule, None)


@st.composite
def answer_events(draw: st.DrawFn, n_workforces: int) -> AnswerEvent:
    accepted_after = timedelta(seconds=draw(st.integers(0, 90 * 24 * 3600)))
    rejected = draw(st.booleans())
    return AnswerEvent(
        workforce=draw(st.integers(0, n_workforces - 1)),
        project_id=draw(st.integers(1, 3)),
        batch_id=draw(st.integers(1, 6)),
        worker_id=draw(st.integers(1, 8)),
        is_gold=draw(st.booleans()),
        accepted_after=accepted_after,
        rejected_after=(
            timedelta(seconds=draw(st.integers(0, 20 * 24 * 3600))) if rejected else None
        ),
        bonus=draw(st.none() | cents(1, 200)),
        seconds_spent=draw(st.integers(1, 600)),
        arrival_delay=timedelta(seconds=draw(st.sampled_from([0, 0, 0, 3600, 10 * 24 * 3600]))),
    )


@st.composite
def campaigns(draw: st.DrawFn, max_answers: int = 40) -> Campaign:
    n = draw(st.integers(1, 4))
    forces = tuple(draw(workforces(index + 1)) for index in range(n))
    events = tuple(draw(st.lists(answer_events(n), min_size=0, max_size=max_answers)))
    return Campaign(forces, events)


@dataclass
class Played:
    """A campaign turned into ledger entries, with what it should come to."""

    entries: list[LedgerEntry] = field(default_factory=list)
    arrivals: dict[int, datetime] = field(default_factory=dict)  # entry id -> arrival time
    expected_total: Decimal = Decimal(0)
    expected_gold: Decimal = Decimal(0)
    rejected_answers: set[int] = field(default_factory=set)


def play(campaign: Campaign) -> Played:
    """Write the campaign's ledger as the orchestrator would, ids in write order."""
    played = Played()

    def store(new: tuple[LedgerEntry, ...], delay: timedelta) -> tuple[LedgerEntry, ...]:
        stored = []
        for entry in new:
            entry = replace(entry, id=len(played.entries) + 1)
            played.entries.append(entry)
            played.arrivals[entry.id] = entry.occurred_at + delay  # type: ignore[index]
            stored.append(entry)
        return tuple(stored)

    for answer_id, event in enumerate(campaign.answers, start=1):
        force = campaign.workforces[event.workforce]
        refs = EntryRefs(
            project_id=event.project_id,
            batch_id=event.batch_id,
            workforce_id=force.workforce_id,
            vendor_id=force.vendor_id,
            worker_id=event.worker_id,
            answer_id=answer_id,
        )
        accepted_at = START + event.accepted_after
        # Some answers are the first on their item, so per-item prices get charged too.
        first = answer_id % 3 == 0
        written = store(
            entries_for_accepted_answer(
                card=force.card,
                fee_rule=force.fee_rule,
                is_gold=event.is_gold,
                occurred_at=accepted_at,
                refs=refs,
                seconds_spent=event.seconds_spent,
                is_first_for_item=first,
            ),
            event.arrival_delay,
        )
        cost = answer_cost(
            card=force.card,
            fee_rule=force.fee_rule,
            is_gold=event.is_gold,
            seconds_spent=event.seconds_spent,
            is_first_for_item=first,
        )
        if event.rejected_after is not None:
            store(
                reverse(written, occurred_at=accepted_at + event.rejected_after),
                event.arrival_delay,
            )
            played.rejected_answers.add(answer_id)
        else:
            played.expected_total += cost
            if event.is_gold:
                played.expected_gold += cost
        if event.bonus is not None:
            store(
                entries_for_bonus(
                    event.bonus,
                    fee_rule=force.fee_rule,
                    currency=CURRENCY,
                    occurred_at=accepted_at + timedelta(hours=1),
                    refs=refs,
                ),
                event.arrival_delay,
            )
            played.expected_total += event.bonus
            if isinstance(force.fee_rule, MTurkFeeRule):
                played.expected_total += mturk_bonus_fee(event.bonus)
    return played
