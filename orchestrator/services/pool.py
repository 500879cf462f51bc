"""The internal pool's hand-out: leases, answers on leases, expiry.

Workers pull: `next_task` leases one slot to the calling worker. On PostgreSQL the
slot is chosen with `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on
each other and never receive the same slot; on SQLite every transaction takes the
write lock first (see `orchestrator.db`), which is correct for one process.

Gold: about `gold_rate` of what each worker sees is gold. Gold slots are created
on demand for the worker whose turn it is: the worker's next task is gold when
`gold_seen < round(gold_rate * (tasks_seen + 1))`, taken first from the batch's
gold set, then from the project's, never one the worker has seen.

Both routes are hot paths, so they run Core statements, a handful per call.
"""

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
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
    Slot,
    accept_answer,
    check_label,
    reopen_slots,
    upsert_worker_record,
)

A = Assignment.__table__
SEEN = A.alias("seen")


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
    worker = session.execute(
        sa.select(Worker.status, Worker.workforce_id, Workforce.kind, Workforce.config)
        .join(Workforce, Workforce.id == Worker.workforce_id)
        .where(Worker.id == worker_id)
    ).one_or_none()
    if worker is None or worker.status != "active":
        raise ForbiddenError("this worker is not active")
    if worker.kind != "internal":
        raise ForbiddenError("only internal-pool workers pull tasks")
    slot = _find_open_slot(session, worker_id, worker.workforce_id, project_id, item_id)
    if slot is None and expire_leases(session, workforce_id=worker.workforce_id):
        slot = _find_open_slot(session, worker_id, worker.workforce_id, project_id, item_id)
    if slot is None:
        return None
    if session.get_bind().dialect.name == "postgresql":
        # A lease lost in a crash costs nothing (the slot stays open), so the hand-out
        # need not wait for its commit to reach the disk; answers always do.
        session.execute(sa.text("SET LOCAL synchronous_commit TO off"))
    seconds = slot.lease_seconds or worker.config.get("lease_seconds") or default_lease_seconds
    record = upsert_worker_record(session, worker_id, slot.project_id, tasks_seen=1)
    gold = None
    if _is_gold_turn(slot.gold_rate, record):
        gold = _lease_gold(session, worker_id, worker.workforce_id, slot, seconds, gold_item_ids)
    if gold is None:
        token, expires_at = _lease(session, slot.id, worker_id, seconds)
        leased_item, data = slot.item_id, slot.data
    else:
        leased_item, token, expires_at = gold
        data = session.scalar(sa.select(Item.data).where(Item.id == leased_item))
    return Lease(
        token,
        expires_at,
        slot.project_id,
        data or {},
        slot.instructions,
        list(slot.labels),
        leased_item,
    )


def _find_open_slot(
    session: Session, worker_id: int, workforce_id: int, project_id: int | None, item_id: int | None
) -> sa.Row | None:
    blocked = sa.select(WorkerProject.project_id).where(
        WorkerProject.worker_id == worker_id, WorkerProject.status == "blocked"
    )
    query = (
        sa.select(
            A.c.id,
            A.c.project_id,
            A.c.batch_id,
            A.c.item_id,
            Item.data,
            Project.gold_rate,
            Project.lease_seconds,
            Project.instructions,
            Project.labels,
        )
        .join(Item, Item.id == A.c.item_id)
        .join(Project, Project.id == A.c.project_id)
        .where(
            A.c.workforce_id == workforce_id,
            A.c.status == "open",
            A.c.is_gold.is_(False),
            A.c.project_id.not_in(blocked),
            ~sa.exists().where(SEEN.c.item_id == A.c.item_id, SEEN.c.worker_id == worker_id),
        )
        .order_by(A.c.id)
        .limit(1)
    )
    if project_id is not None:
        query = query.where(A.c.project_id == project_id)
    if item_id is not None:
        query = query.where(A.c.item_id == item_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=A)
    return session.execute(query).one_or_none()


def _lease_values(worker_id: int, seconds: int) -> dict[str, Any]:
    now = utcnow()
    return {
        "status": "leased",
        "worker_id": worker_id,
        "lease_token": secrets.token_urlsafe(24),
        "leased_at": now,
        "lease_expires_at": now + timedelta(seconds=seconds),
    }


def _lease(session: Session, slot_id: int, worker_id: int, seconds: int) -> tuple[str, datetime]:
    values = _lease_values(worker_id, seconds)
    # Conditional on still being open: a second line of defence behind the row lock.
    leased = session.execute(
        sa.update(A).where(A.c.id == slot_id, A.c.status == "open").values(**values)
    )
    if leased.rowcount != 1:
        raise ConflictError("the slot was taken by another worker; ask again")
    return values["lease_token"], values["lease_expires_at"]


def _is_gold_turn(gold_rate: float, record: sa.Row) -> bool:
    # `record` already counts this hand-out in tasks_seen.
    return gold_rate > 0 and record.gold_seen < math.floor(gold_rate * record.tasks_seen + 0.5)


def _lease_gold(
    session: Session,
    worker_id: int,
    workforce_id: int,
    slot: sa.Row,
    seconds: int,
    allowed: list[int] | None,
) -> tuple[int, str, datetime] | None:
    unseen = ~sa.exists().where(A.c.item_id == Item.id, A.c.worker_id == worker_id)
    if allowed is not None:
        unseen = sa.and_(unseen, Item.id.in_(allowed))
    in_batch = (
        sa.select(Item.id)
        .join(BatchItem, BatchItem.item_id == Item.id)
        .where(BatchItem.batch_id == slot.batch_id, BatchItem.is_gold.is_(True), unseen)
    )
    in_project = sa.select(Item.id).where(
        Item.project_id == slot.project_id, Item.gold_label.is_not(None), unseen
    )
    for query in (in_batch, in_project):
        item_id = session.scalar(query.order_by(sa.func.random()).limit(1))
        if item_id is not None:
            break
    else:
        return None
    # Billing: a gold answer costs like any other; reserve it, or serve an ordinary task.
    reserved = budgets.reserve_slot(session, slot.project_id, workforce_id, gold=True)
    if reserved is None:
        return None
    values = _lease_values(worker_id, seconds)
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
    upsert_worker_record(session, worker_id, slot.project_id, gold_seen=1)
    return item_id, values["lease_token"], values["lease_expires_at"]


def _leased_slot(session: Session, worker_id: int, token: str) -> sa.Row:
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
            A.c.leased_at,
            A.c.lease_expires_at,
            Project.labels,
            Item.gold_label,
        )
        .join(Project, Project.id == A.c.project_id)
        .join(Item, Item.id == A.c.item_id)
        .where(A.c.lease_token == token)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=A)
    slot = session.execute(query).one_or_none()
    if slot is None:
        raise NotFoundError("no such lease")
    if slot.worker_id != worker_id:
        raise ConflictError("this lease belongs to another worker", details={"lease": ["foreign"]})
    if slot.status == "answered":
        raise ConflictError("this lease was already answered", details={"lease": ["answered"]})
    if slot.status != "leased" or slot.lease_expires_at <= utcnow():
        raise ConflictError(
            "this lease has expired or was withdrawn; ask for a new task",
            details={"lease": ["expired"]},
        )
    return slot


def submit_answer(
    session: Session, *, worker_id: int, token: str, label: object, time_spent_ms: int | None = None
) -> AcceptedAnswer:
    """Store a worker's answer to their live lease."""
    slot = _leased_slot(session, worker_id, token)
    checked = check_label(slot.labels, label)
    if time_spent_ms is None:
        time_spent_ms = int((utcnow() - slot.leased_at).total_seconds() * 1000)
    return accept_answer(
        session,
        slot=Slot(
            slot.id, slot.item_id, slot.project_id, slot.batch_id, slot.workforce_id, slot.is_gold
        ),
        worker_id=worker_id,
        label=checked,
        gold_label=slot.gold_label,
        time_spent_ms=time_spent_ms,
    )


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
