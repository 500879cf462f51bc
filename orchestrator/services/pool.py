"""The internal pool's hand-out: leases, answers on leases, expiry.

Workers pull: `next_task` leases one slot to the calling worker. On PostgreSQL the
slot is chosen with `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on
each other and never receive the same slot; on SQLite every transaction takes the
write lock first (see `orchestrator.db`), which is correct for one process.

Gold: about `gold_rate` of what each worker sees is gold. Gold slots are created
on demand for the worker whose turn it is: the worker's next task is gold when
`gold_seen < round(gold_rate * (tasks_seen + 1))`, taken first from the batch's
gold set, then from the project's, never one the worker has seen.
"""

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

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
from orchestrator.services.answers import (
    AcceptedAnswer,
    accept_answer,
    check_label,
    reopen_slots,
    worker_record,
)

MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Lease:
    """A task leased to a worker: what the worker sees, and nothing about gold."""

    token: str
    expires_at: datetime
    project_id: int
    data: dict[str, Any]
    instructions: str
    labels: list[str]


def next_task(
    session: Session, *, worker_id: int, project_id: int | None = None, default_lease_seconds: int
) -> Lease | None:
    """Lease the next slot to a worker, or return None when there is no work for them."""
    worker = session.get(Worker, worker_id)
    if worker is None or worker.status != "active":
        raise ForbiddenError("this worker is not active")
    workforce = session.get(Workforce, worker.workforce_id)
    if workforce is None or workforce.kind != "internal":
        raise ForbiddenError("only internal-pool workers pull tasks")
    for attempt in range(MAX_ATTEMPTS):
        slot = _find_open_slot(session, worker, project_id)
        if slot is None:
            if attempt == 0 and expire_leases(session, workforce_id=workforce.id):
                continue
            return None
        project = session.get(Project, slot.project_id)
        assert project is not None
        lease_seconds = (
            project.lease_seconds or workforce.config.get("lease_seconds") or default_lease_seconds
        )
        record = worker_record(session, worker.id, project.id)
        gold_slot = _lease_gold(session, worker, project, slot, record, lease_seconds)
        leased = gold_slot or _lease(session, slot.id, worker.id, lease_seconds)
        if leased is None:
            continue  # another process took the slot first (SQLite retry path)
        record.tasks_seen += 1
        record.gold_seen += int(gold_slot is not None)
        data = session.scalar(sa.select(Item.data).where(Item.id == leased.item_id))
        return Lease(
            token=leased.lease_token or "",
            expires_at=leased.lease_expires_at or utcnow(),
            project_id=project.id,
            data=data or {},
            instructions=project.instructions,
            labels=list(project.labels),
        )
    return None


def _find_open_slot(session: Session, worker: Worker, project_id: int | None) -> Any:
    seen = aliased(Assignment)
    blocked = sa.select(WorkerProject.project_id).where(
        WorkerProject.worker_id == worker.id, WorkerProject.status == "blocked"
    )
    query = (
        sa.select(Assignment.id, Assignment.project_id, Assignment.batch_id, Assignment.item_id)
        .where(
            Assignment.workforce_id == worker.workforce_id,
            Assignment.status == "open",
            Assignment.is_gold.is_(False),
            Assignment.project_id.not_in(blocked),
            ~sa.exists().where(seen.item_id == Assignment.item_id, seen.worker_id == worker.id),
        )
        .order_by(Assignment.id)
        .limit(1)
    )
    if project_id is not None:
        query = query.where(Assignment.project_id == project_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Assignment)
    return session.execute(query).first()


def _lease(session: Session, slot_id: int, worker_id: int, lease_seconds: int) -> Assignment | None:
    now = utcnow()
    # Conditional on still being open, so two racing transactions cannot both win.
    updated = session.execute(
        sa.update(Assignment)
        .where(Assignment.id == slot_id, Assignment.status == "open")
        .values(
            status="leased",
            worker_id=worker_id,
            lease_token=secrets.token_urlsafe(24),
            leased_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(Assignment)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return updated


def _is_gold_turn(project: Project, record: WorkerProject) -> bool:
    due = math.floor(project.gold_rate * (record.tasks_seen + 1) + 0.5)
    return project.gold_rate > 0 and record.gold_seen < due


def _lease_gold(
    session: Session,
    worker: Worker,
    project: Project,
    slot: Any,
    record: WorkerProject,
    lease_seconds: int,
) -> Assignment | None:
    if not _is_gold_turn(project, record):
        return None
    unseen = ~sa.exists().where(Assignment.item_id == Item.id, Assignment.worker_id == worker.id)
    in_batch = (
        sa.select(Item.id)
        .join(BatchItem, BatchItem.item_id == Item.id)
        .where(BatchItem.batch_id == slot.batch_id, BatchItem.is_gold.is_(True), unseen)
    )
    in_project = sa.select(Item.id).where(
        Item.project_id == project.id, Item.gold_label.is_not(None), unseen
    )
    for query in (in_batch, in_project):
        item_id = session.scalar(query.order_by(sa.func.random()).limit(1))
        if item_id is not None:
            break
    else:
        return None
    now = utcnow()
    gold = Assignment(
        batch_id=slot.batch_id,
        item_id=item_id,
        project_id=project.id,
        workforce_id=worker.workforce_id,
        is_gold=True,
        status="leased",
        worker_id=worker.id,
        lease_token=secrets.token_urlsafe(24),
        leased_at=now,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        created_at=now,
    )
    session.add(gold)
    session.flush()
    return gold


def _leased_slot(session: Session, worker_id: int, token: str) -> Assignment:
    slot = session.scalar(
        sa.select(Assignment).where(Assignment.lease_token == token).with_for_update()
    )
    if slot is None:
        raise NotFoundError("no such lease")
    if slot.worker_id != worker_id:
        raise ConflictError("this lease belongs to another worker", details={"lease": ["foreign"]})
    if slot.status == "answered":
        raise ConflictError("this lease was already answered", details={"lease": ["answered"]})
    if slot.status != "leased" or (slot.lease_expires_at and slot.lease_expires_at <= utcnow()):
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
    project = session.get(Project, slot.project_id)
    assert project is not None
    checked = check_label(project, label)
    if time_spent_ms is None and slot.leased_at is not None:
        time_spent_ms = int((utcnow() - slot.leased_at).total_seconds() * 1000)
    return accept_answer(
        session,
        project=project,
        assignment=slot,
        worker_id=worker_id,
        label=checked,
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
