"""The internal pool's hand-out: leases, answers on leases, expiry.

Workers pull: `next_task` leases one slot to the calling worker, `next_tasks` a
suite of slots of distinct items in one go, and `submit_answer` / `submit_answers`
store answers on them. On PostgreSQL slots are chosen with `FOR UPDATE SKIP
LOCKED`, so concurrent workers never wait on each other and never receive the same
slot; on SQLite every transaction takes the write lock first (see
`orchestrator.db`), which is correct for one process.

Gold: about `gold_rate` of what each worker sees is gold. Gold slots are created
on demand for the worker whose turn it is: the worker's next task is gold when
`gold_seen < round(gold_rate * (tasks_seen + 1))`, taken first from the batch's
gold set, then from the project's, never one the worker has seen.

These are hot paths, so they run Core statements, a handful per request whatever
the suite's size.
"""

import functools
import json
import math
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.db import is_storable_text, utcnow
from orchestrator.errors import ConflictError, ForbiddenError, NotFoundError
from orchestrator.models import (
    Assignment,
    BatchItem,
    Item,
    Project,
    Worker,
    WorkerProject,
    Workforce,
)
from orchestrator.services import budgets
from orchestrator.services.answers import (
    AcceptedAnswer,
    AnswerIntake,
    NewAnswer,
    Slot,
    check_label,
    reopen_slots,
    upsert_worker_record,
)
from orchestrator.services.rate_cards import Pricing, pricing_for

A = Assignment.__table__
SEEN = A.alias("seen")
IS_OPEN = A.c.status == sa.literal_column("'open'")
"""A literal, not a parameter: so even a prepared statement's generic plan can use the
partial index `ix_assignment_open_queue`, whose condition is `status = 'open'`."""
SUITE_READ_AHEAD = 4
"""Open slots read per task wanted in a suite: an item's slots lie side by side."""
SUITE_REJECT_CODES = (
    "not_found",
    "foreign",
    "answered",
    "expired",
    "duplicate",
    "worker_blocked",
    "invalid_label",
)
"""Why a row of a suite submission can be refused."""


@dataclass(frozen=True)
class Lease:
    """A task leased to a worker: what the worker sees, and nothing about gold."""

    token: str
    expires_at: datetime
    project_id: int
    data: dict[str, Any]
    instructions: str
    labels: list[str]
    # For the service's own callers (replays); the worker-facing schema leaves it out.
    item_id: int


MAX_SUITE = 50
"""The most tasks one hand-out leases at once (a task suite)."""


def next_task(
    session: Session,
    *,
    worker_id: int,
    project_id: int | None = None,
    default_lease_seconds: int,
    item_id: int | None = None,
    gold_item_ids: list[int] | None = None,
) -> Lease | None:
    """Lease the next slot to a worker, or return None when there is no work for them.

    `item_id` and `gold_item_ids` narrow the choice to one item and to those gold
    items; replays (`quorum simulate`) use them so that every answer comes from the
    worker who really gave it. The worker-facing route never passes them.
    """
    leases = next_tasks(
        session,
        worker_id=worker_id,
        count=1,
        project_id=project_id,
        default_lease_seconds=default_lease_seconds,
        item_id=item_id,
        gold_item_ids=gold_item_ids,
    )
    return leases[0] if leases else None


def next_tasks(
    session: Session,
    *,
    worker_id: int,
    count: int,
    project_id: int | None = None,
    default_lease_seconds: int,
    item_id: int | None = None,
    gold_item_ids: list[int] | None = None,
) -> list[Lease]:
    """Lease up to `count` tasks of one project to a worker, each of a different item.

    A task suite: one hand-out, one transaction and a few statements for the whole
    suite. Gold keeps its share: the suite holds as many gold tasks as the worker's
    gold turns within it, at random places. An empty list means no work for them.
    """
    worker = session.execute(_worker_query(), {"worker_id": worker_id}).one_or_none()
    if worker is None or worker.status != "active":
        raise ForbiddenError("this worker is not active")
    if worker.kind != "internal":
        raise ForbiddenError("only internal-pool workers pull tasks")
    find = (session, worker_id, worker.workforce_id, project_id, item_id, count)
    slots = _find_open_slots(*find)
    if not slots and expire_leases(session, workforce_id=worker.workforce_id):
        slots = _find_open_slots(*find)
    if not slots:
        return []
    if session.get_bind().dialect.name == "postgresql":
        # A lease lost in a crash costs nothing (the slot stays open), so the hand-out
        # need not wait for its commit to reach the disk; answers always do.
        session.execute(sa.text("SET LOCAL synchronous_commit TO off"))
    first = slots[0]
    seconds = first.lease_seconds or worker.config.get("lease_seconds") or default_lease_seconds
    record = upsert_worker_record(session, worker_id, first.project_id, tasks_seen=len(slots))
    gold_leases: list[Lease] = []
    gold_turns = min(_gold_turns(first.gold_rate, record), len(slots))
    price = (
        pricing_for(session, project_id=first.project_id, workforce_id=worker.workforce_id)
        if gold_turns
        else None
    )
    budgeted = first.budget_micros is not None or worker.budget_micros is not None
    for _ in range(gold_turns):
        gold = _lease_gold(
            session, worker_id, worker.workforce_id, first, seconds, gold_item_ids, price, budgeted
        )
        if gold is None:
            break
        gold_item, data, token, expires_at = gold
        gold_leases.append(_to_lease(first, token, expires_at, gold_item, data))
    if gold_leases:
        upsert_worker_record(session, worker_id, first.project_id, gold_seen=len(gold_leases))
    ordinary = slots[: len(slots) - len(gold_leases)]
    leases = [
        _to_lease(slot, token, expires_at, slot.item_id, json.loads(slot.data_json))
        for slot, (token, expires_at) in zip(
            ordinary,
            _lease(session, [slot.id for slot in ordinary], worker_id, seconds),
            strict=True,
        )
    ]
    for lease in gold_leases:
        leases.insert(random.randint(0, len(leases)), lease)
    return leases


def _to_lease(slot: sa.Row, token: str, expires_at: datetime, item_id: int, data: Any) -> Lease:
    return Lease(
        token,
        expires_at,
        slot.project_id,
        data or {},
        slot.instructions,
        json.loads(slot.labels_json),
        item_id,
    )


def _find_open_slots(
    session: Session,
    worker_id: int,
    workforce_id: int,
    project_id: int | None,
    item_id: int | None,
    count: int,
) -> list[sa.Row]:
    """Lock up to `count` open slots of one project, of distinct items the worker hasn't seen."""
    query = _open_slots_query(
        project_id is not None, item_id is not None, session.get_bind().dialect.name
    )
    params = {
        "worker_id": worker_id,
        "workforce_id": workforce_id,
        # An item has several open slots side by side; read past them to fill a suite.
        "limit": count if count == 1 else count * SUITE_READ_AHEAD,
    }
    if project_id is not None:
        params["project_id"] = project_id
    if item_id is not None:
        params["item_id"] = item_id
    chosen: dict[int, sa.Row] = {}
    suite_project = None
    for slot in session.execute(query, params):
        suite_project = suite_project or slot.project_id
        if slot.project_id == suite_project and slot.item_id not in chosen:
            chosen[slot.item_id] = slot
            if len(chosen) == count:
                break
    return list(chosen.values())


@functools.cache
def _worker_query() -> sa.Select[Any]:
    return (
        sa.select(
            Worker.status,
            Worker.workforce_id,
            Workforce.kind,
            Workforce.config,
            Workforce.budget_micros,
        )
        .join(Workforce, Workforce.id == Worker.workforce_id)
        .where(Worker.id == sa.bindparam("worker_id"))
    )


@functools.cache
def _open_slots_query(by_project: bool, by_item: bool, dialect: str) -> sa.Select[Any]:
    """The open-slot query, built once per shape; parameters as `_find_open_slots` passes them."""
    worker_id = sa.bindparam("worker_id")
    blocked = sa.select(WorkerProject.project_id).where(
        WorkerProject.worker_id == worker_id, WorkerProject.status == "blocked"
    )
    query = (
        sa.select(
            A.c.id,
            A.c.project_id,
            A.c.batch_id,
            A.c.item_id,
            # As JSON text: decoded only for the rows chosen (a suite reads ahead).
            sa.cast(Item.data, sa.Text).label("data_json"),
            Project.gold_rate,
            Project.budget_micros,
            Project.lease_seconds,
            Project.instructions,
            sa.cast(Project.labels, sa.Text).label("labels_json"),
        )
        .join(Item, Item.id == A.c.item_id)
        .join(Project, Project.id == A.c.project_id)
        .where(
            A.c.workforce_id == sa.bindparam("workforce_id"),
            IS_OPEN,
            A.c.is_gold.is_(False),
            A.c.project_id.not_in(blocked),
            ~sa.exists().where(SEEN.c.item_id == A.c.item_id, SEEN.c.worker_id == worker_id),
        )
        # Oldest batch first; `ix_assignment_open_queue` yields exactly this order.
        .order_by(A.c.batch_id, A.c.id)
        .limit(sa.bindparam("limit"))
    )
    if by_project:
        query = query.where(A.c.project_id == sa.bindparam("project_id"))
    if by_item:
        query = query.where(A.c.item_id == sa.bindparam("item_id"))
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True, of=A)
    return query


def _lease_values(worker_id: int, seconds: int, lease_token: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "status": "leased",
        "worker_id": worker_id,
        "lease_token": lease_token,
        "leased_at": now,
        "lease_expires_at": now + timedelta(seconds=seconds),
    }


def _lease(
    session: Session, slot_ids: list[int], worker_id: int, seconds: int
) -> list[tuple[str, datetime]]:
    """Lease open slots to a worker in one statement; return each one's token and expiry."""
    if not slot_ids:
        return []
    tokens = {slot_id: secrets.token_urlsafe(24) for slot_id in slot_ids}
    values = _lease_values(worker_id, seconds, sa.case(tokens, value=A.c.id))
    # Conditional on still being open: a second line of defence behind the row lock.
    leased = session.execute(
        sa.update(A).where(A.c.id.in_(slot_ids), A.c.status == "open").values(**values)
    )
    if leased.rowcount != len(slot_ids):
        raise ConflictError("a slot was taken by another worker; ask again")
    return [(tokens[slot_id], values["lease_expires_at"]) for slot_id in slot_ids]


def _gold_turns(gold_rate: float, record: sa.Row) -> int:
    """How many of the tasks just counted in `record.tasks_seen` are the worker's gold turns."""
    if gold_rate <= 0:
        return 0
    return max(0, math.floor(gold_rate * record.tasks_seen + 0.5) - record.gold_seen)


def _lease_gold(
    session: Session,
    worker_id: int,
    workforce_id: int,
    slot: sa.Row,
    seconds: int,
    allowed: list[int] | None,
    price: Pricing | None,
    budgeted: bool,
) -> tuple[int, Any, str, datetime] | None:
    """Lease a gold item the worker has not seen: its id, data, lease token and expiry."""

    def unseen(item_id: Any) -> sa.ColumnElement[bool]:
        condition = ~sa.exists().where(A.c.item_id == item_id, A.c.worker_id == worker_id)
        return condition if allowed is None else sa.and_(condition, item_id.in_(allowed))

    # The draw reads only the candidates' ids; the chosen item's data is read by key.
    in_batch = sa.select(BatchItem.item_id).where(
        BatchItem.batch_id == slot.batch_id,
        BatchItem.is_gold.is_(True),
        unseen(BatchItem.item_id),
    )
    in_project = sa.select(Item.id).where(
        Item.project_id == slot.project_id, Item.gold_label.is_not(None), unseen(Item.id)
    )
    for query in (in_batch, in_project):
        drawn = query.order_by(sa.func.random()).limit(1).scalar_subquery()
        chosen = session.execute(sa.select(Item.id, Item.data).where(Item.id == drawn)).first()
        if chosen is not None:
            break
    else:
        return None
    item_id, data = chosen
    # Billing: a gold answer costs like any other; reserve it, or serve an ordinary task.
    reserved = budgets.reserve_slot(
        session, slot.project_id, workforce_id, gold=True, pricing=price, budgeted=budgeted
    )
    if reserved is None:
        return None
    values = _lease_values(worker_id, seconds, secrets.token_urlsafe(24))
    session.execute(
        sa.insert(A).values(
            batch_id=slot.batch_id,
            item_id=item_id,
            project_id=slot.project_id,
            workforce_id=workforce_id,
            is_gold=True,
            reserved_micros=reserved,
            created_at=values["leased_at"],
            **values,
        )
    )
    return item_id, data, values["lease_token"], values["lease_expires_at"]


def _leased_slots(session: Session, tokens: list[str]) -> dict[str, sa.Row]:
    """Read (and on PostgreSQL lock, in id order) the slots leased under these tokens.

    A token no backend could store (a NUL, say, from a URL) names no lease: it is left out
    rather than sent to the database, which would refuse it.
    """
    query = _leased_slots_query(session.get_bind().dialect.name)
    storable = [token for token in tokens if is_storable_text(token)]
    return {slot.lease_token: slot for slot in session.execute(query, {"tokens": storable})}


@functools.cache
def _leased_slots_query(dialect: str) -> sa.Select[Any]:
    query = (
        sa.select(
            A.c.id,
            A.c.item_id,
            A.c.project_id,
            A.c.batch_id,
            A.c.workforce_id,
            A.c.is_gold,
            A.c.status,
            A.c.worker_id,
            A.c.lease_token,
            A.c.leased_at,
            A.c.lease_expires_at,
            Project.labels,
            Item.gold_label,
        )
        .join(Project, Project.id == A.c.project_id)
        .join(Item, Item.id == A.c.item_id)
        .where(A.c.lease_token.in_(sa.bindparam("tokens", expanding=True)))
        .order_by(A.c.id)
    )
    if dialect == "postgresql":
        query = query.with_for_update(of=A)
    return query


def _lease_problem(slot: sa.Row | None, worker_id: int) -> tuple[str, str] | None:
    """Why a worker may not answer on this lease (a code and a reason), or None if they may."""
    if slot is None:
        return "not_found", "no such lease"
    if slot.worker_id != worker_id:
        return "foreign", "this lease belongs to another worker"
    if slot.status == "answered":
        return "answered", "this lease was already answered"
    if slot.status != "leased" or slot.lease_expires_at <= utcnow():
        return "expired", "this lease has expired or was withdrawn; ask for a new task"
    return None


def _leased_slot(session: Session, worker_id: int, token: str) -> sa.Row:
    slot = _leased_slots(session, [token]).get(token)
    problem = _lease_problem(slot, worker_id)
    if problem is None:
        return slot
    code, reason = problem
    if code == "not_found":
        raise NotFoundError(reason)
    raise ConflictError(reason, details={"lease": [code]})


def _new_answer(slot: sa.Row, worker_id: int, label: str, time_spent_ms: int | None) -> NewAnswer:
    if time_spent_ms is None:
        time_spent_ms = int((utcnow() - slot.leased_at).total_seconds() * 1000)
    return NewAnswer(
        Slot(
            slot.id, slot.item_id, slot.project_id, slot.batch_id, slot.workforce_id, slot.is_gold
        ),
        worker_id,
        label,
        slot.gold_label,
        time_spent_ms,
    )


def submit_answer(
    session: Session, *, worker_id: int, token: str, label: object, time_spent_ms: int | None = None
) -> AcceptedAnswer:
    """Store a worker's answer to their live lease."""
    slot = _leased_slot(session, worker_id, token)
    intake = AnswerIntake(session)
    intake.add(_new_answer(slot, worker_id, check_label(slot.labels, label), time_spent_ms))
    return intake.finish()[0]


@dataclass(frozen=True)
class SuiteAnswer:
    """One answer of a suite submission: the lease it answers, the label, optional time."""

    lease_id: str
    label: str
    time_spent_ms: int | None = None


@dataclass(frozen=True)
class SuiteOutcome:
    """What became of one row: its answer, or why it was refused (`code`, `reason`)."""

    row: int
    lease_id: str
    answer_id: int | None = None
    label: str | None = None
    code: str | None = None
    reason: str | None = None


def submit_answers(
    session: Session, *, worker_id: int, answers: list[SuiteAnswer]
) -> list[SuiteOutcome]:
    """Store a worker's answers to several of their leases; refuse bad rows one by one.

    Each row is judged like a single answer (409 reasons and 422 labels become a
    row's `code` and `reason`), so a bad row never costs the good ones. Once a gold
    answer in the request gets the worker blocked, their remaining rows are refused.
    """
    slots = _leased_slots(session, [answer.lease_id for answer in answers])
    intake = AnswerIntake(session)
    refused: dict[int, tuple[str, str]] = {}
    seen: set[str] = set()
    blocked = False
    for row, answer in enumerate(answers):
        slot = slots.get(answer.lease_id)
        problem = _lease_problem(slot, worker_id)
        if answer.lease_id in seen:
            problem = "duplicate", "this lease appears earlier in the request"
        elif blocked:
            problem = "worker_blocked", "your gold answers in this request got you blocked"
        elif problem is None and answer.label not in slot.labels:
            problem = "invalid_label", f"label {answer.label!r} is not one of the project's labels"
        seen.add(answer.lease_id)
        if problem is not None:
            refused[row] = problem
            continue
        blocked = intake.add(_new_answer(slot, worker_id, answer.label, answer.time_spent_ms))
    stored = iter(intake.finish())
    outcomes = []
    for row, answer in enumerate(answers):
        if row in refused:
            code, reason = refused[row]
            outcomes.append(SuiteOutcome(row, answer.lease_id, code=code, reason=reason))
        else:
            accepted = next(stored)
            outcomes.append(SuiteOutcome(row, answer.lease_id, accepted.answer_id, accepted.label))
    return outcomes


def release_task(session: Session, *, worker_id: int, token: str) -> None:
    """Give a leased task back to the queue without answering it."""
    slot = _leased_slot(session, worker_id, token)
    reopen_slots(session, Assignment.id == slot.id, ended_status="released")


def expire_leases(
    session: Session, *, workforce_id: int | None = None, now: datetime | None = None
) -> int:
    """End every lease past its expiry and reopen its slot; return how many ended."""
    condition = sa.and_(
        Assignment.status == "leased", Assignment.lease_expires_at <= (now or utcnow())
    )
    if workforce_id is not None:
        condition = sa.and_(condition, Assignment.workforce_id == workforce_id)
    return reopen_slots(session, condition, ended_status="expired")
